import { Inject, Injectable, Logger } from '@nestjs/common';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import type { Observable } from 'rxjs';
import { Contender } from '../queue/contender.js';
import type { QueueContext } from '../queue/queue-context.js';
import { EtcdLockEvents } from '../events/etcd-lock.events.js';
import { readHolder, watchHolder } from '../queue/holder-watch.js';
import type { Lock, LockHolder } from './lock.interface.js';
import { namePrefix } from '../etcd/keys.js';
import { LocalQueue } from '../queue/local-queue.js';
import { holdContext } from './hold-context.js';
import { HoldPath } from './hold-path.js';
import { EtcdSessionService } from '../session/session.service.js';
import { assertName, assertOptions, assertValue } from '../util/validation.js';
import { Telemetry } from '../telemetry/telemetry.js';

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

  private readonly logger = new Logger('EtcdLock');
  private readonly path: HoldPath;

  /** @internal Nest constructs it. */
  constructor(
    private readonly sessions: EtcdSessionService,
    events: EtcdLockEvents,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
    private readonly connection: EtcdConnection,
    private readonly watches: DeletionWatches,
    telemetry: Telemetry,
  ) {
    this.path = new HoldPath('lock', (name) => `Lock '${name}'`, this.logger, events, telemetry);
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
    const value = this.valueOf(options);
    return this.path.acquire(name, 'acquire', options, async (signal) => {
      // One key per lease and name: callers in this process take turns locally first.
      const exit = await this.local.enter(name, signal);
      return { contender: new Contender(this.context(name), this.sessions.current(), value), exit };
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
    const value = this.valueOf(options);
    return this.path.tryAcquire(name, 'try_acquire', () => {
      const exit = this.local.tryEnter(name);
      if (!exit) return undefined;
      try {
        return { contender: new Contender(this.context(name), this.sessions.current(), value), exit };
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
    return readHolder(this.connection.port, 'lock', this.prefixOf(name));
  }

  /**
   * Every change of the lock's holder or of its value, `null` while free (a name server, or health monitoring
   * by watching a lock's value). Emits the current holder first.
   */
  watch(name: string): Observable<LockHolder | null> {
    assertName(name);
    return watchHolder(this.connection.port, 'lock', this.prefixOf(name));
  }

  /** The lock held by the `withLock` callback or `@Singleton` method running now, if any. */
  static current(): Lock | undefined {
    return holdContext('lock').getStore();
  }

  /** Same as the static `LockService.current()`. */
  current(): Lock | undefined {
    return holdContext('lock').getStore();
  }

  private valueOf(options: { value?: unknown } | undefined): string {
    if (options?.value === undefined) return this.options.identity;
    assertValue(options.value, 'options.value');
    return options.value;
  }

  private prefixOf(name: string): string {
    return namePrefix(this.options.prefix, 'lock', name);
  }

  private context(name: string): QueueContext {
    return {
      rpc: this.connection.port,
      kind: 'lock',
      deletes: this.watches.of('lock'),
      namePrefix: this.prefixOf(name),
      name,
    };
  }
}
