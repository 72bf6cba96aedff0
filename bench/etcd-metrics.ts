/**
 * etcd's own count of the gRPC messages it received, by method, summed over members: one per unary call (Range,
 * Txn, LeaseGrant, …) and one per message on a stream (a watch creation, a keepalive). "Requests per operation"
 * is the difference of two readings divided by the operations in between.
 */
export async function requestsByMethod(endpoints: readonly string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const endpoint of endpoints) {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    for (const line of text.split('\n')) {
      const match = /^grpc_server_msg_received_total\{.*grpc_method="(\w+)".*\} (\d+)/.exec(line);
      if (match) counts.set(match[1], (counts.get(match[1]) ?? 0) + Number(match[2]));
    }
  }
  return counts;
}

/** What was received between two readings, leaving out methods with none. */
export function received(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [method, count] of after) {
    const delta = count - (before.get(method) ?? 0);
    if (delta > 0) diff[method] = delta;
  }
  return diff;
}

export function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Streams opened between two readings (e.g. keepalive streams), from `grpc_server_started_total`. */
export async function streamsStarted(endpoints: readonly string[], method: string): Promise<number> {
  let count = 0;
  for (const endpoint of endpoints) {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    const match = new RegExp(`^grpc_server_started_total\\{.*grpc_method="${method}".*\\} (\\d+)`, 'm').exec(text);
    count += Number(match?.[1] ?? 0);
  }
  return count;
}
