/** One critical section of the checker workload, as a worker reports it. */
export interface Operation {
  identity: string;
  token: string;
  /**
   * Real-clock ms when the lock was held, and when the fenced write was sent. (Not when its answer came: a
   * holder paused after sending may hear back after the next holder started, which is no violation: etcd
   * applied the write while the lock was still its.)
   */
  start: number;
  end: number;
  /** The fenced write was acknowledged by etcd. */
  ok: boolean;
  /** `unknown`: no answer came, so the write may or may not have been applied (an indeterminate operation). */
  outcome?: 'ok' | 'rejected' | 'unknown';
  /** The fenced counter the section read (it wrote this + 1). */
  fencedRead: number;
}

export interface HistoryReport {
  operations: number;
  acknowledged: number;
  /** Violations among acknowledged fenced operations: must be none. */
  fencedViolations: string[];
  /** Lost updates of the unfenced copy (writes that did not count). */
  unfencedLost: number;
}

/**
 * Checks a history (pure). Acknowledged operations, ordered by fencing token, must have distinct tokens, must
 * not overlap in time (1 ms tolerance for timestamps from different processes), and must each read a larger
 * counter than the one before (each saw the previous write: no lost update). A read may skip values only for
 * writes whose outcome nobody learned: `indeterminate` counts those (unknown outcomes and clients killed
 * mid-operation), as in Jepsen; the final counter may exceed the acknowledged increments by as many.
 */
export function checkHistory(
  ops: Operation[],
  finalFenced: number,
  finalUnfenced: number,
  unfencedWrites: number,
  indeterminate = 0,
): HistoryReport {
  const acked = ops.filter((o) => o.ok).sort((a, b) => (BigInt(a.token) < BigInt(b.token) ? -1 : 1));
  const violations: string[] = [];
  const extra = finalFenced - acked.length;
  if (extra < 0 || extra > indeterminate) {
    violations.push(`fenced counter is ${finalFenced} but ${acked.length} increments were acknowledged (${indeterminate} indeterminate)`);
  }
  let skipped = 0;
  for (let i = 0; i < acked.length; i++) {
    const op = acked[i];
    const prev = acked[i - 1];
    const expectedAtLeast = prev ? prev.fencedRead + 1 : 0;
    if (op.fencedRead < expectedAtLeast) {
      violations.push(`token ${op.token} (${op.identity}) read ${op.fencedRead}, but an earlier holder had written ${expectedAtLeast}`);
    }
    skipped += Math.max(0, op.fencedRead - expectedAtLeast);
    if (!prev) continue;
    if (prev.token === op.token) violations.push(`token ${op.token} given twice`);
    if (prev.end > op.start + 1) {
      violations.push(`${prev.identity} (token ${prev.token}) and ${op.identity} (token ${op.token}) overlapped`);
    }
  }
  if (skipped > indeterminate) violations.push(`${skipped} increments appeared from nowhere (${indeterminate} indeterminate)`);
  return {
    operations: ops.length,
    acknowledged: acked.length,
    fencedViolations: violations,
    unfencedLost: unfencedWrites - finalUnfenced,
  };
}
