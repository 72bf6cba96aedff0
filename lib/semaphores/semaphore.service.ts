import { Injectable, type Logger } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { oldestFirst } from '../etcd/requests.js';
import { holdContext } from '../locks/hold-context.js';
import { assertMaxHold, type HoldPath, type Joined } from '../locks/hold-path.js';
import type { QueueSnapshot } from '../inventory/queue-inspect.js';
import { HoldPaths } from '../locks/hold-paths.js';
import type { Lock, LockHolder } from '../locks/lock.interface.js';
import type { Contender } from '../queue/contender.js';
import { queueKeyFilter, toHolder, watchQueue } from '../queue/holder-watch.js';
import { assertLimit, assertName, assertOptions } from '../util/validation.js';
import { limitOfKey, PermitSequences, permitKeyName } from './permit-key.js';

/**
 * A held permit of a semaphore: the surface of a `Lock` (its fencing token is its key's create revision, unique
 * and greater for every later permit of the name; its signal aborts when the permit is lost).
 */
export type Permit = Lock;

/** Options of `SemaphoreService.tryAcquire` (and the base of `acquire`'s). */
export interface PermitOptions {
  /** How many permits of the name may be held at once, across every replica (1 to 10,000). */
  readonly limit: number;
  /** The value stored in the permit's key. Default: the instance identity. */
  readonly value?: string;
  /** Bound the hold, as `AcquireOptions.maxHoldMs` of a lock: the permit's signal aborts with reason `max-hold`. */
  readonly maxHoldMs?: number;
}

/** Options of `SemaphoreService.acquire` and `withPermit`. */
export interface AcquirePermitOptions extends PermitOptions {
  /** Give up after this many ms with `LockTimeoutError` (nothing is left in etcd). */
  readonly timeout?: number;
  /** Give up when it aborts, with its reason (nothing is left in etcd). */
  readonly signal?: AbortSignal;
}

const ACQUIRE_OPTIONS = ['limit', 'value', 'timeout', 'signal', 'maxHoldMs'];

/**
 * Counting semaphores on etcd: at most `limit` permits of a name are held at once across all replicas. Each
 * permit is a key `<prefix>semaphore/<name>/<lease hex>-<n>-of-<limit>` on the instance's session lease; the
 * `limit` oldest keys (by create revision) hold permits, the others wait in arrival order, watching deletions
 * (never polling). The limit in force is the oldest key's: a caller asking for another waits under it (warned once
 * per name and pair of limits), so a rolling deploy that changes the limit never fails a caller.
 */
@Injectable()
export class SemaphoreService {
  private readonly logger: Logger;
  private readonly sequences = new PermitSequences();
  /** `<name> <asked> <in force>` already warned about. */
  private readonly warned = new Set<string>();
  private readonly path: HoldPath;

  /** @internal Nest constructs it. */
  constructor(paths: HoldPaths) {
    this.path = paths.for('semaphore', (name) => `Permit of semaphore '${name}'`);
    this.logger = paths.logger;
  }

  /**
   * Waits until a permit is held (in arrival order). On timeout rejects with `LockTimeoutError`, on abort with
   * the signal's reason; either way nothing is left in etcd.
   */
  async acquire(name: string, options: AcquirePermitOptions): Promise<Permit> {
    const { limit, value } = this.check(name, options, ACQUIRE_OPTIONS);
    this.path.checkWait(options);
    return this.path.acquire(name, 'acquire_permit', options, () => this.join(name, limit, value));
  }

  /** Takes a permit if one is free now; `null` when all `limit` are held (one read). */
  async tryAcquire(name: string, options: PermitOptions): Promise<Permit | null> {
    const { limit, value } = this.check(name, options, ['limit', 'value', 'maxHoldMs']);
    assertMaxHold(options.maxHoldMs);
    return this.path.tryAcquire(name, 'try_acquire_permit', () => this.join(name, limit, value), true, options.maxHoldMs);
  }

  /**
   * Acquires a permit, runs `fn(permit)`, and releases it in every case. `fn` should stop when its signal aborts.
   * Inside `fn`, `SemaphoreService.current()` returns the permit too.
   */
  withPermit<T>(name: string, fn: (permit: Permit) => T | Promise<T>, options: AcquirePermitOptions): Promise<T> {
    return this.path.with(fn, () => this.acquire(name, options));
  }

  /** The permit held by the `withPermit` callback or `@MaxConcurrent` method running now, if any. */
  static current(): Permit | undefined {
    return holdContext('semaphore').getStore();
  }

  /** Same as the static `SemaphoreService.current()`. */
  current(): Permit | undefined {
    return holdContext('semaphore').getStore();
  }

  /** The permits held now, oldest first (one read). */
  async holders(name: string): Promise<LockHolder[]> {
    assertName(name);
    const prefix = Buffer.from(this.path.prefixOf(name));
    const res = await this.path.port.range(oldestFirst(prefix), `read the permits of '${name}'`);
    const permits = res.kvs.filter(queueKeyFilter('semaphore', this.path.prefixOf(name)));
    const limit = permits[0] ? (limitOfKey(permits[0].key.toString()) ?? 1) : 0;
    return permits.slice(0, limit).map(toHolder);
  }

  /** Who holds a permit and who waits, in order, with their values, tokens and leases: one etcd read. */
  inspect(name: string): Promise<QueueSnapshot> {
    assertName(name);
    return this.path.inspect(name);
  }

  /** The permits held, at every change (emits the current ones first). Watches etcd, never polls. */
  watch(name: string): Observable<LockHolder[]> {
    assertName(name);
    return watchQueue(this.path.port, 'semaphore', this.path.prefixOf(name), (oldest) => limitOfKey(oldest) ?? 1);
  }

  private check(name: string, options: PermitOptions, known: string[]): { limit: number; value: string } {
    assertName(name);
    if (options === undefined) assertLimit(undefined);
    assertOptions(options, 'options', known);
    assertLimit(options.limit);
    return { limit: options.limit, value: this.path.valueOf(options) };
  }

  /** A permit's contender, on the smallest sequence number free here; the number is free again once it left. */
  private join(name: string, limit: number, value: string): Joined {
    const sequence = this.sequences.take(name);
    return { contender: this.contender(name, limit, value, sequence), slot: { exit: () => this.sequences.give(name, sequence) } };
  }

  private contender(name: string, limit: number, value: string, sequence: number): Contender {
    return this.path.contender(name, value, {
      slots: limit,
      keyName: permitKeyName(sequence, limit),
      slotsOf: (oldest) => {
        const inForce = limitOfKey(oldest) ?? limit;
        if (inForce !== limit) this.warnLimit(name, limit, inForce);
        return inForce;
      },
      slotsNamedBy: limitOfKey,
    });
  }

  private warnLimit(name: string, asked: number, inForce: number): void {
    const key = `${name} ${asked} ${inForce}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn(
      `Semaphore '${name}' has limit ${inForce} in force (its oldest permit's); a caller asked for ${asked} and waits ` +
        `under ${inForce} until every older permit is gone (a rolling deploy that changes the limit)`,
    );
  }
}
