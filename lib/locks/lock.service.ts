import { Injectable } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { readHolder, watchHolder } from '../queue/holder-watch.js';
import { LocalQueue } from '../queue/local-queue.js';
import { assertName, assertOptions } from '../util/validation.js';
import { holdContext } from './hold-context.js';
import type { HoldPath } from './hold-path.js';
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
}

/** Options of `tryAcquire`. */
export interface TryAcquireOptions {
  /** The value stored in the lock key. Default: the instance identity. */
  value?: string;
}

const ACQUIRE_OPTIONS = ['timeout', 'signal', 'value'] as const;

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
    return this.path.acquire(name, 'acquire', options, async (signal) => {
      // One key per lease and name: callers in this process take turns locally first.
      const exit = await this.local.enter(name, signal);
      try {
        return { contender: this.path.contender(name, value), exit };
      } catch (err) {
        exit(); // no session now: the next caller here must not wait for a slot nobody will give back
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
    assertOptions(options, 'options', ['value']);
    const value = this.path.valueOf(options);
    return this.path.tryAcquire(name, 'try_acquire', () => {
      const exit = this.local.tryEnter(name);
      if (!exit) return undefined;
      try {
        return { contender: this.path.contender(name, value), exit };
      } catch (err) {
        exit();
        throw err;
      }
    });
  }

  /**
   * Acquires, runs `fn(lock)`, and releases in every case (also when `fn` throws). `fn` should stop early
   * when `lock.signal` aborts. Inside `fn`, `LockService.current()` returns the lock too.
   */
  withLock<T>(name: string, fn: (lock: Lock) => T | Promise<T>, options?: AcquireOptions): Promise<T> {
    return this.path.with(fn, () => this.acquire(name, options));
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

  /** The lock held by the `withLock` callback or `@Singleton` method running now, if any. */
  static current(): Lock | undefined {
    return holdContext('lock').getStore();
  }

  /** Same as the static `LockService.current()`. */
  current(): Lock | undefined {
    return holdContext('lock').getStore();
  }
}
