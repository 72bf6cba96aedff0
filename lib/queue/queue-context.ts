import type { ICompare, IRequestOp } from 'etcd3';
import type { EtcdPort } from '../etcd/etcd-port.js';
import type { KeyKind } from '../etcd/keys.js';
import type { DeleteWatch } from './delete-watch.js';

/** Where a contender's key lives and what it is called: one name of one kind (lock, election, permit, shard…). */
export interface QueueContext {
  readonly rpc: EtcdPort;
  /** Which keyspace the name lives in: what a contender's key looks like there (`isQueueKey`). */
  readonly kind: KeyKind;
  readonly deletes: DeleteWatch;
  /** e.g. `myapp/lock/orders/` */
  readonly namePrefix: string;
  /** The public name, for error messages. */
  readonly name: string;
  /**
   * We own once fewer than `slots` keys we wait for are ahead: 1 for a lock or an election, the limit for a semaphore
   * (each key is one permit; `keyName` tells an instance's permits apart and names the limit).
   */
  readonly slots?: number;
  /** The slots in force given the oldest key under the name, when that key sets them (a semaphore's limit). */
  readonly slotsOf?: (oldestKey: string) => number;
  /**
   * The slots a key asks for, when keys name them (a semaphore's permit keys name their limit): while every key
   * ahead asks for ours, whichever is oldest sets the same, and a waiter watches only the keys just ahead of it.
   */
  readonly slotsNamedBy?: (key: string) => number | undefined;
  /**
   * Our key after the name prefix, from the lease's tag: its hex (etcd's layout, and the default key), or
   * `<hex>.<n>` once a write there went unanswered (`own-keys.ts`).
   */
  readonly keyName?: (leaseTag: string) => string;
  /**
   * Where the keys we wait for live, if not under the whole name (a reader waits for the writers only, under
   * `<name prefix>write/`): the join compares and reads only that range.
   */
  readonly waitPrefix?: string;
  /**
   * More to check and write in a `joinIfFree` (one slot only): the join puts our key only if these compares hold
   * too, and writes `success` with it, in the same request; `failure` runs when it does not (before the read of the
   * oldest key). A scheduled job's run claims its fire time this way: the hold and the run's record in one write.
   */
  readonly joinGuard?: () => { compares: ICompare[]; success: IRequestOp[]; failure: IRequestOp[] };
}
