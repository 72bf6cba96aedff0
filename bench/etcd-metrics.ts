import { grpcCounts } from '../test/harness/etcd.js';

/**
 * etcd's own count of the gRPC messages it received, by method, summed over members: one per unary call (Range,
 * Txn, LeaseGrant, …) and one per message on a stream (a watch creation, a keepalive). "Requests per operation"
 * is the difference of two readings divided by the operations in between.
 */
export function requestsByMethod(endpoints: readonly string[]): Promise<Map<string, number>> {
  return grpcCounts(endpoints);
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

/** Streams of `method` (e.g. LeaseKeepAlive) opened so far, summed over members. */
export async function streamsStarted(endpoints: readonly string[], method: string): Promise<number> {
  return (await grpcCounts(endpoints, 'grpc_server_started_total')).get(method) ?? 0;
}
