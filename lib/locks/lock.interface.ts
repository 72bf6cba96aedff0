import type { FencedTxn } from './fenced-txn.js';

/** A held distributed lock. Get one from `LockService.acquire`, `tryAcquire` or `withLock`. */
export interface Lock extends AsyncDisposable {
  /** The lock's name, as passed to `acquire`. */
  readonly name: string;
  /**
   * The full etcd key of this holder: `<prefix>lock/<name>/<lease id in hex>` (with a suffix `.<n>` after a
   * release of this instance's whose answer was lost: see `release`).
   */
  readonly key: string;
  /** The value stored in the key (default: the instance identity). */
  readonly value: string;
  /**
   * The create revision of the key: strictly greater for every later holder of the same name. Pass it to
   * anything the lock protects, and have that reject writes carrying a smaller token than it has seen.
   */
  readonly fencingToken: bigint;
  /** Aborts the moment ownership ends: with `LockLostError` on loss, `LockReleasedError` on release. */
  readonly signal: AbortSignal;
  /** True while this instance owns the lock, judged on the local lease deadline (no request). */
  readonly isHeld: boolean;
  /**
   * Releases the lock: one delete of this holder's key. Idempotent. Only this instance creates that key, one
   * caller at a time, so the delete reaches no one else's; a delete whose answer is lost is retried guarded by the
   * key's create revision, and this instance's next key under the name gets another name, which the late delete
   * cannot reach. So a late release never frees a newer holder.
   */
  release(): Promise<void>;
  /** Changes the stored value without releasing; watchers see it. Throws `LockLostError` if no longer held. */
  setValue(value: string): Promise<void>;
  /** An etcd transaction that commits only while this lock is still held (for state kept in etcd). */
  fencedTxn(): FencedTxn;
}

/** Who holds a lock now, as read from etcd. */
export interface LockHolder {
  /** The holder's full etcd key. */
  readonly key: string;
  /** The holder's value (its identity, unless it set another). */
  readonly value: string;
  /** The holder's fencing token (its key's create revision). */
  readonly fencingToken: bigint;
  /** The holder's lease id in hex, as `etcdctl lease list` shows it. */
  readonly leaseId: string;
}
