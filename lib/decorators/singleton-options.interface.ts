/** Options of `@Singleton(key, options)`. */
export interface SingletonOptions {
  /** Wait for the lock instead of skipping the call when it is busy. Default false. */
  wait?: boolean;
  /** With `wait`: give up after this many ms (then skip, or throw `LockTimeoutError` with `onBusy: 'throw'`). */
  timeout?: number;
  /** What a call does when the lock is busy (or etcd is unreachable): return `undefined` (default) or throw. */
  onBusy?: 'skip' | 'throw';
  /**
   * Keep the lock at least this many ms after it was taken, even if the method returns sooner. For a cron job,
   * set it above the largest clock difference between replicas and below the cron period: each tick then runs
   * exactly once across replicas (the others find the lock still held and skip).
   */
  minHoldMs?: number;
  /**
   * Bound the hold (ShedLock's `lockAtMostFor`): after this many ms the call's lock signal aborts with reason
   * `max-hold`, and the lock is released once the call settles. Default: no bound.
   */
  maxHoldMs?: number;
}

/** The key of a `@Singleton` lock: a name, or a function of the method's arguments returning one. */
export type SingletonKey = string | ((...args: never[]) => string);
