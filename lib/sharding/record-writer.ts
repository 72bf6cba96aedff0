/** How long a member other than the oldest waits, the record unchanged and not what it would write, before writing. */
export const FALLBACK_WRITE_MS = 2000;

/**
 * Who writes a group's assignment record. Every member computes the next record from the same snapshot (members
 * and record at one revision): were each to write it, all but one would fail their compare, each failure a raft
 * round, R - 1 conflicts per change and growing with the fleet. The oldest member writes; the others converge on
 * its record when their watch brings it. Should the oldest not write (its requests failing, or another shard
 * count in force for it in a rolling deploy), a member writes itself once the record has stayed as it is, and not
 * what it would write, for `FALLBACK_WRITE_MS`.
 */
export class RecordWriter {
  private stale: { revision: string; since: number } | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** `recheck`: look at the group again (when a member's wait is over). */
  constructor(private readonly recheck: () => void) {}

  /**
   * Whether this member writes the successor of the record at `recordRevision` now. If not, and the record does not
   * change meanwhile, `recheck` is called when it may.
   */
  mayWrite(oldest: boolean, recordRevision: string): boolean {
    if (oldest) return true;
    const now = performance.now();
    if (this.stale?.revision === recordRevision) return now - this.stale.since >= FALLBACK_WRITE_MS;
    this.stale = { revision: recordRevision, since: now };
    clearTimeout(this.timer);
    this.timer = setTimeout(this.recheck, FALLBACK_WRITE_MS + 1);
    this.timer.unref();
    return false;
  }

  /** The record is as this member would write it (or it just wrote it), or the member stops: nothing to wait for. */
  settled(): void {
    this.stale = undefined;
    clearTimeout(this.timer);
  }
}
