import { AsyncLocalStorage } from 'node:async_hooks';
import { InvalidArgumentError } from '../errors.js';
import { shardOf } from './shard-hash.js';
import type { ShardSlot } from './shard-slot.js';
import type { Shard, ShardSet } from './shard.interface.js';

/** The shards of the `@Sharded` run in progress, for `ShardingService.current()`. */
export const shardContext = new AsyncLocalStorage<ShardSet>();

/** A run's shards: a snapshot of those owned when it started, each with its own live signal. */
export class OwnedShards implements ShardSet {
  private readonly byIndex: ReadonlyMap<number, Shard>;

  constructor(
    readonly group: string,
    readonly count: number,
    readonly shards: readonly ShardSlot[],
  ) {
    this.byIndex = new Map(shards.map((shard) => [shard.index, shard]));
  }

  /** @internal Counts a run on every shard of the set: none is handed over before it ends (and `minHoldMs`). */
  use(run: Promise<unknown>, minHoldMs: number): void {
    for (const shard of this.shards) shard.use(run, minHoldMs);
  }

  shardOf(key: string): number {
    if (typeof key !== 'string') throw new InvalidArgumentError('key', `must be a string, got ${typeof key}`);
    return shardOf(key, this.count);
  }

  shardFor(key: string): Shard | undefined {
    const shard = this.byIndex.get(this.shardOf(key));
    return shard?.isOwned ? shard : undefined;
  }

  owns(key: string): boolean {
    return this.shardFor(key) !== undefined;
  }

  tokenFor(key: string): bigint {
    const index = this.shardOf(key);
    const shard = this.byIndex.get(index);
    if (!shard)
      throw new InvalidArgumentError('key', `'${key}' is in shard ${index} of group '${this.group}', which this run does not own`);
    if (!shard.isOwned) throw shard.signal.reason;
    return shard.fencingToken;
  }
}
