import { Injectable } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { readHolder, watchHolder } from '../queue/holder-watch.js';
import { LocalQueue } from '../queue/local-queue.js';
import { InvalidArgumentError } from '../errors.js';
import { assertFunction, assertName, assertOptions } from '../util/validation.js';
import type { QueueSnapshot } from '../inventory/queue-inspect.js';
import { acquireAll, canonicalNames, type MultiLock } from './multi-lock.js';
import { holdContext } from './hold-context.js';
import { assertMaxHold, type HoldPath } from './hold-path.js';
import { HoldPaths } from './hold-paths.js';
import type { Lock, LockHolder } from './lock.interface.js';

/** Options of `acquire` and `withLock`. */
export interface AcquireOptions {
  /** Give up after this many milliseconds with `LockTimeoutError`. Default: wait as long as it takes. */
  timeout?: number;
  /** Give up when this signal aborts, rejecting with its reason. */
  signal?: AbortSignal;
  /** The value stored in the lock key. Default: the instance identity. */
  value?: string;
  /**
   * Bound the hold: after this many milliseconds the lock's signal aborts with `LockLostError` (reason
   * `max-hold`) and the lock is released, at once for a handle, once the callback settles for `withLock`. For work
   * on resources that cannot check a fencing token (ShedLock's `lockAtMostFor`). Default: no bound.
   */
  maxHoldMs?: number;
  /**
   * Opt in to reentrancy: inside a `withLock` callback (or a `@Singleton` method) that holds this lock, taking it
   * again returns a nested handle at once, with no request; its release does not release the lock. Off by
   * default: a nested take usually means a bug (two parts of one flow both think they own the work).
   */
  reentrant?: boolean;
}

/** Options of `tryAcquire`. */
export interface TryAcquireOptions {
  /** The value stored in the lock key. Default: the instance identity. */
  value?: string;
  /** As `AcquireOptions.maxHoldMs`. */
  maxHoldMs?: number;
  /** As `AcquireOptions.reentrant`. */
  reentrant?: boolean;
}

const ACQUIRE_OPTIONS = ['timeout', 'signal', 'value', 'maxHoldMs', 'reentrant'] as const;

/**
 * Distributed locks on etcd, in etcd's own key layout (`<prefix>lock/<name>/<lease hex>`), so they contend with
 * `etcdctl lock` and Go's `concurrency.Mutex`. Every lock lives on the instance's session lease.
 */
@Injectable()
export class LockService {
  private readonly local = new LocalQueue();
  private readonly path: HoldPath;

  /** @internal Nest constructs it. */
  constructor(paths: HoldPaths) {
    this.path = paths.for('lock', (name) => `Lock '${name}'`);
  }

  /**
   * Waits until the lock is held. Waiters are served in arrival order (etcd create revision); waiting watches
   * etcd, never polls. On timeout rejects with `LockTimeoutError`, on abort with the signal's reason; either
   * way nothing is left in etcd.
   */
  async acquire(name: string, options?: AcquireOptions): Promise<Lock> {
    assertName(name);
    assertOptions(options, 'options', ACQUIRE_OPTIONS);
    this.path.checkWait(options);
    const value = this.path.valueOf(options);
    const nested = this.reentered(name, options?.reentrant);
    if (nested) return nested;
    return this.path.acquire(name, 'acquire', options, async (signal) => {
      // One key per lease and name: callers in this process take turns locally first.
      const slot = await this.local.enter(name, signal);
      try {
        return { contender: this.path.contender(name, value), slot };
      } catch (err) {
        slot.exit(); // no session now: the next caller here must not wait for a slot nobody will give back
        throw err;
      }
    });
  }

  /**
   * Takes the lock if it is free; `null` at once when someone (here or elsewhere) holds it. Held here: no
   * request. Held elsewhere: one read, which etcd serves without a raft round (a transaction that may write
   * always takes one), so a `@Singleton` firing on every replica costs the others a read. Free: that read, then
   * one transaction that takes the lock only if it is still free.
   */
  async tryAcquire(name: string, options?: TryAcquireOptions): Promise<Lock | null> {
    assertName(name);
    assertOptions(options, 'options', ['value', 'maxHoldMs', 'reentrant']);
    assertMaxHold(options?.maxHoldMs);
    const value = this.path.valueOf(options);
    const nested = this.reentered(name, options?.reentrant);
    if (nested) return nested;
    return this.path.tryAcquire(
      name,
      'try_acquire',
      () => {
        const slot = this.local.tryEnter(name);
        if (!slot) return undefined;
        try {
          return { contender: this.path.contender(name, value), slot };
        } catch (err) {
          slot.exit();
          throw err;
        }
      },
      true,
      options?.maxHoldMs,
    );
  }

  /**
   * Acquires, runs `fn(lock)`, and releases in every case (also when `fn` throws). `fn` should stop early
   * when `lock.signal` aborts. Inside `fn`, `LockService.current()` returns the lock too.
   */
  withLock<T>(name: string, fn: (lock: Lock) => T | Promise<T>, options?: AcquireOptions): Promise<T> {
    return this.path.with(fn, () => this.acquire(name, options));
  }

  /**
   * Takes every lock in `names`, all or nothing, in one canonical order (so that two callers wanting overlapping
   * sets cannot deadlock), with one `timeout` for the whole. The result's signal aborts when any lock is lost.
   * On failure the locks already taken are released before it rejects. `reentrant` is not offered here.
   */
  async acquireAll(names: readonly string[], options?: Omit<AcquireOptions, 'reentrant'>): Promise<MultiLock> {
    const sorted = canonicalNames(names);
    assertOptions(options, 'options', ['timeout', 'signal', 'value', 'maxHoldMs']);
    this.path.checkWait(options);
    const { value, maxHoldMs } = options ?? {};
    return acquireAll(sorted, options, this.path.clock, (name, signal) => this.acquire(name, { signal, value, maxHoldMs }));
  }

  /** Holds every lock in `names` (as `acquireAll`) while `fn(locks)` runs, and releases them all in every case. */
  async withLocks<T>(
    names: readonly string[],
    fn: (locks: MultiLock) => T | Promise<T>,
    options?: Omit<AcquireOptions, 'reentrant'>,
  ): Promise<T> {
    assertFunction(fn, 'fn');
    const locks = await this.acquireAll(names, options);
    try {
      return await fn(locks);
    } finally {
      await locks.release();
    }
  }

  /** Who holds the lock and who waits, in order, with their values, tokens and leases: one etcd read. */
  inspect(name: string): Promise<QueueSnapshot> {
    assertName(name);
    return this.path.inspect(name);
  }

  /** Who holds the lock now, or `null` when it is free. */
  holder(name: string): Promise<LockHolder | null> {
    assertName(name);
    return readHolder(this.path.port, 'lock', this.path.prefixOf(name));
  }

  /**
   * Every change of the lock's holder or of its value, `null` while free (a name server, or health monitoring
   * by watching a lock's value). Emits the current holder first.
   */
  watch(name: string): Observable<LockHolder | null> {
    assertName(name);
    return watchHolder(this.path.port, 'lock', this.path.prefixOf(name));
  }

  private reentered(name: string, reentrant: unknown): Lock | undefined {
    if (reentrant !== undefined && typeof reentrant !== 'boolean') {
      throw new InvalidArgumentError('options.reentrant', `must be a boolean, got ${typeof reentrant}`);
    }
    return reentrant ? this.path.reenter(name) : undefined;
  }

  /** The lock held by the `withLock` callback or `@Singleton` method running now, if any. */
  static current(): Lock | undefined {
    return holdContext('lock').getStore();
  }

  /** Same as the static `LockService.current()`. */
  current(): Lock | undefined {
    return holdContext('lock').getStore();
  }
}
