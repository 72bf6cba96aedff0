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
  /**
   * Leader workload: the operation's place within its term. One term (one token, one identity) makes many
   * operations, one after another; lock sections have one each.
   */
  seq?: number;
}

/** How many pairs of operations of different holders ran at once (start to write sent): what fencing protects from. */
export function overlaps(ops: Operation[]): number {
  const sorted = [...ops].sort((a, b) => a.start - b.start);
  let count = 0;
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j].start < sorted[i].end - 1; j++) {
      if (sorted[j].identity !== sorted[i].identity) count++;
    }
  }
  return count;
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
  const acked = ops
    .filter((o) => o.ok)
    .sort((a, b) => (a.token === b.token ? (a.seq ?? 0) - (b.seq ?? 0) : BigInt(a.token) < BigInt(b.token) ? -1 : 1));
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
    const sameTerm = prev.token === op.token && prev.identity === op.identity && prev.seq !== undefined && prev.seq !== op.seq;
    if (prev.token === op.token && !sameTerm) violations.push(`token ${op.token} given twice`);
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
