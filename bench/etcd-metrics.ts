import { etcdMetric, grpcCounts } from '../test/harness/etcd.js';

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

/**
 * What calls sent, leaving out the sessions' keepalives: every instance renews its lease every TTL/3 whatever
 * it does, and one may land in any measurement window.
 */
export function sentByCalls(counts: Record<string, number>): number {
  return total(counts) - (counts.LeaseKeepAlive ?? 0);
}

/**
 * Waits (at most 2 s) until etcd receives nothing but keepalives for 100 ms: apps just started still send their
 * campaigns' joins and watch creations, which a count of what a call sends must not include. `ongoing` counts
 * calls that go on whatever happens (a scheduled job's ticks), which are left out.
 */
export async function quiet(endpoints: readonly string[], ongoing: () => number = () => 0): Promise<void> {
  let last = await requestsByMethod(endpoints);
  let lastOngoing = ongoing();
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await requestsByMethod(endpoints);
    const nowOngoing = ongoing();
    if (sentByCalls(received(last, now)) <= nowOngoing - lastOngoing) return;
    [last, lastOngoing] = [now, nowOngoing];
  }
}

/** Streams of `method` (e.g. LeaseKeepAlive) opened so far, summed over members. */
export async function streamsStarted(endpoints: readonly string[], method: string): Promise<number> {
  return (await grpcCounts(endpoints, 'grpc_server_started_total')).get(method) ?? 0;
}

/** Events etcd has sent to watchers, over all its members. */
export async function eventsSent(endpoints: readonly string[]): Promise<number> {
  let total = 0;
  for (const endpoint of endpoints) total += await etcdMetric(endpoint, 'etcd_debugging_mvcc_events_total');
  return total;
}
