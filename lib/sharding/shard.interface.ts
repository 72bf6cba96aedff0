import type { FencedTxn } from '../locks/fenced-txn.js';

/** One shard this instance owns: held as a lock on `<prefix>shard/<group>/<index>/`, so no other member owns it. */
export interface Shard {
  /** The sharding group. */
  readonly group: string;
  /** 0 … shards − 1. */
  readonly index: number;
  /** The create revision of this instance's key for the shard: strictly greater for each later owner. */
  readonly fencingToken: bigint;
  /** Aborts (with `ShardLostError`) when this instance stops owning the shard; stop working on it then. */
  readonly signal: AbortSignal;
  /** Synchronous, from local state. */
  readonly isOwned: boolean;
  /** A transaction that commits only while this instance still owns the shard under `fencingToken`. */
  fencedTxn(): FencedTxn;
}

/** The shards of a group this instance owns during a `@Sharded` run (from `ShardingService.current()`). */
export interface ShardSet {
  /** The sharding group. */
  readonly group: string;
  /** The group's shard count. */
  readonly count: number;
  /** The shards owned when the run started, ascending by index. */
  readonly shards: readonly Shard[];
  /** `shardOf(key)`: MurmurHash3 (x86, 32-bit, seed 0) of the key's UTF-8 bytes, modulo the shard count. */
  shardOf(key: string): number;
  /** Whether the key's shard is in this set and still owned. */
  owns(key: string): boolean;
  /** The fencing token of the key's shard; throws `ShardLostError`/`InvalidArgumentError` when not owned here. */
  tokenFor(key: string): bigint;
  /** The owned shard of a key, or undefined. */
  shardFor(key: string): Shard | undefined;
}
