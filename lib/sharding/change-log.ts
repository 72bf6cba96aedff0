/** How long the shards owned here must stay unchanged before the change is logged. */
const QUIET_MS = 100;

/**
 * One log line per rebalance, not one per shard: a rebalance takes or hands over shards one request at a time,
 * so the changes are summed up and logged once they stop for `QUIET_MS` (or at `flush()`), as
 * `Shards of group 'g': 5 of 16 owned here (+[1, 6] −[0])`. The `owned()` stream and the `ShardsChanged` events
 * still tell every change as it happens.
 */
export class ShardChangeLog {
  private readonly gained = new Set<number>();
  private readonly lost = new Set<number>();
  private owned: readonly number[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly group: string,
    private readonly count: number,
    private readonly log: (line: string) => void,
  ) {}

  /** The shards owned now, after `gained` and `lost`. */
  changed(owned: readonly number[], gained: readonly number[], lost: readonly number[]): void {
    for (const index of gained) if (!this.lost.delete(index)) this.gained.add(index);
    for (const index of lost) if (!this.gained.delete(index)) this.lost.add(index);
    this.owned = owned;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), QUIET_MS);
    this.timer.unref();
  }

  /** Logs what changed since the last line, if anything did. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.gained.size === 0 && this.lost.size === 0) return;
    const list = (set: Set<number>) => [...set].sort((a, b) => a - b).join(', ');
    const change = [this.gained.size ? `+[${list(this.gained)}]` : '', this.lost.size ? `−[${list(this.lost)}]` : '']
      .filter(Boolean)
      .join(' ');
    this.gained.clear();
    this.lost.clear();
    this.log(`Shards of group '${this.group}': ${this.owned.length} of ${this.count} owned here (${change})`);
  }
}
