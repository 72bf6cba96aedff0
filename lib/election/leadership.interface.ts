import type { FencedTxn } from '../locks/fenced-txn.js';

/**
 * One term: one continuous leadership of one election by this instance. Given to `@OnLeadership` methods, and
 * to `@LeaderOnly` runs through `LeaderElectionService.current()`.
 */
export interface Leadership {
  /** The election's name. */
  readonly election: string;
  /** This instance's identity (the value of its election key). */
  readonly identity: string;
  /**
   * The create revision of this instance's election key (Go's `Election.Rev()`): strictly greater for every later
   * term of this election, whoever leads it. Hand it to a store so it can refuse a deposed leader's writes.
   */
  readonly fencingToken: bigint;
  /**
   * Aborts when the term ends, with a `LeadershipLostError`: at once on our own resign or shutdown; when etcd
   * tells us the key is gone; and when the session's local deadline passes, which is before etcd can expire the
   * lease and so before another instance can be elected.
   */
  readonly signal: AbortSignal;
  /** True until the term ends; synchronous, from local state (and the clock), no etcd request. */
  readonly isLeader: boolean;
  /**
   * A transaction that commits only while this term's election key still exists with its create revision;
   * otherwise `commit()` throws `LeadershipLostError` and the signal aborts.
   */
  fencedTxn(): FencedTxn;
}
