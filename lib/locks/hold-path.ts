import { InvalidArgumentError, type LockLostError } from '../errors.js';
import type { Clock } from '../clock/clock.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { inspectQueue, type QueueSnapshot } from '../inventory/queue-inspect.js';
import { namePrefix } from '../etcd/keys.js';
import type { HoldKind } from '../events/etcd-lock.events.js';
import { Contender } from '../queue/contender.js';
import { type LocalSlot, NO_LOCAL_SLOT } from '../queue/local-queue.js';
import type { QueueContext } from '../queue/queue-context.js';
import { takeTurn, tryTakeTurn } from '../queue/turn.js';
import type { AcquireOperation } from '../telemetry/telemetry.js';
import { assertDuration, assertFunction, assertSignal, assertValue } from '../util/validation.js';
import { WaitSignal } from '../util/wait-signal.js';
import { HeldLock } from './held-lock.js';
import { heldInContext, holdContext } from './hold-context.js';
import { NestedLock } from './nested-lock.js';
import type { HoldPaths } from './hold-paths.js';
import type { Lock } from './lock.interface.js';
import { lossReporter } from './loss-report.js';

/** How long to wait and when to give up, as every `acquire` takes them; how long the hold may last. */
export interface WaitOptions {
  readonly timeout?: number;
  readonly signal?: AbortSignal;
  /** The hold's signal aborts (`max-hold`) after this long, and the hold is released once its work settles. */
  readonly maxHoldMs?: number;
}

/** The longest `maxHoldMs`: a timer's limit (about 24.8 days). */
export const MAX_HOLD_LIMIT_MS = 2 ** 31 - 1;

/** `maxHoldMs`: undefined, or a whole number of milliseconds from 1 to `MAX_HOLD_LIMIT_MS`. */
export function assertMaxHold(maxHoldMs: unknown): void {
  if (maxHoldMs === undefined) return;
  if (typeof maxHoldMs !== 'number' || !Number.isInteger(maxHoldMs) || maxHoldMs < 1 || maxHoldMs > MAX_HOLD_LIMIT_MS) {
    throw new InvalidArgumentError(
      'options.maxHoldMs',
      `must be a whole number of milliseconds from 1 to ${MAX_HOLD_LIMIT_MS}, got ${String(maxHoldMs)}`,
    );
  }
}

/** Runs `fn` with `lock` as `kind`'s `current()` hold, and known by name to reentrant acquires inside it. */
function inHoldContext<T>(kind: HoldKind, lock: Lock, fn: () => T): T {
  const held = new Map(heldInContext(kind).getStore()).set(lock.name, lock);
  return holdContext(kind).run(lock, () => heldInContext(kind).run(held, fn));
}

/**
 * Runs the work of a hold (a `with*` callback, a `@Singleton` or `@MaxConcurrent` call) in its context, so that at
 * `maxHoldMs` the signal aborts and the release waits for the work to settle.
 */
export function runInHold<T>(kind: HoldKind, lock: Lock, fn: () => T | Promise<T>): Promise<T> {
  const work = () => inHoldContext(kind, lock, async () => fn());
  return lock instanceof HeldLock ? lock.whileWorking(work) : work();
}

/** A contender of one hold, and what to give back when it is let go (its turn in an in-process queue, if any). */
export interface Joined {
  readonly contender: Contender;
  readonly slot: LocalSlot;
}

/**
 * The one path every lock-like hold takes (a lock, a semaphore permit, a read or a write lock): validate the wait,
 * open its span, take a turn in etcd's queue, hand out a `HeldLock` with its metrics, report its loss with its
 * kind, and run `with*` callbacks inside the hold's context (`current()`). The services differ only in how they
 * make a contender.
 */
export class HoldPath {
  private readonly onLost: (lock: HeldLock, err: LockLostError) => void;

  constructor(
    private readonly kind: HoldKind,
    label: (name: string) => string,
    private readonly deps: HoldPaths,
  ) {
    this.onLost = lossReporter(deps.logger, deps.events, kind, label);
  }

  /** The port to etcd. */
  get port(): EtcdPort {
    return this.deps.connection.port;
  }

  /** The module's clock (timeouts, `maxHoldMs`). */
  get clock(): Clock {
    return this.deps.options.clock;
  }

  /** Who holds `name` and who waits, in order: one read. */
  inspect(name: string): Promise<QueueSnapshot> {
    return inspectQueue(this.port, this.deps.options.prefix, this.kind, name);
  }

  /** `<prefix><kind>/<name>/`: where the name's keys live. */
  prefixOf(name: string): string {
    return namePrefix(this.deps.options.prefix, this.kind, name);
  }

  /** The value a hold's key stores: the caller's (checked), or the instance identity. */
  valueOf(options: { value?: unknown } | undefined): string {
    if (options?.value === undefined) return this.deps.options.identity;
    assertValue(options.value, 'options.value');
    return options.value;
  }

  /** A contender for `name` on the current session; `more` says what differs for this kind (slots, key name…). */
  contender(name: string, value: string, more: Partial<QueueContext> = {}): Contender {
    const ctx: QueueContext = {
      rpc: this.port,
      kind: this.kind,
      deletes: this.deps.watches.of(this.kind),
      namePrefix: this.prefixOf(name),
      name,
      ...more,
    };
    return new Contender(ctx, this.deps.sessions.current(), value);
  }

  /** Checks the wait options of an `acquire` (`timeout`, `signal`); the rest is the caller's to check. */
  checkWait(options: WaitOptions | undefined): void {
    if (options?.timeout !== undefined) assertDuration(options.timeout, 'options.timeout');
    if (options?.signal !== undefined) assertSignal(options.signal, 'options.signal');
    assertMaxHold(options?.maxHoldMs);
  }

  /**
   * The hold on `name` that the running callback is already inside (`with*` or a guarded method), as a nested
   * handle that sends no request; undefined if there is none, or it is no longer held.
   */
  reenter(name: string): Lock | undefined {
    const outer = heldInContext(this.kind).getStore()?.get(name);
    return outer?.isHeld ? new NestedLock(outer) : undefined;
  }

  /**
   * Waits for a turn: `join(signal)` makes the contender (after whatever local wait it needs) and must clean up
   * its own side if it throws. On timeout rejects with `LockTimeoutError`, on abort with the signal's reason;
   * either way nothing is left in etcd.
   */
  async acquire(
    name: string,
    operation: AcquireOperation,
    options: WaitOptions | undefined,
    join: (signal: AbortSignal | undefined) => Promise<Joined> | Joined,
  ): Promise<HeldLock> {
    const start = performance.now();
    const span = this.deps.telemetry.acquireSpan(name, this.kind);
    const wait = new WaitSignal(name, options?.timeout, options?.signal, this.deps.options.clock);
    try {
      const joined = await join(wait.signal);
      try {
        await takeTurn(joined.contender, wait.signal);
      } catch (err) {
        joined.slot.exit();
        throw err;
      }
      span?.('acquired', joined.contender.createRevision);
      return this.held(name, joined, this.deps.telemetry.acquired(name, operation, 'acquired', start), options?.maxHoldMs);
    } catch (err) {
      const outcome = this.deps.telemetry.acquireOutcome(err, wait.signal);
      this.deps.telemetry.acquired(name, operation, outcome, start);
      span?.(outcome);
      throw err;
    } finally {
      wait.dispose();
    }
  }

  /**
   * Takes a turn only if it is ours now, else `null` (see `tryTakeTurn`: one read when the name is busy). `join()`
   * returns undefined when the hold is busy before any request (an in-process holder).
   */
  async tryAcquire(
    name: string,
    operation: AcquireOperation,
    join: () => Joined | undefined,
    probe = true,
    maxHoldMs?: number,
  ): Promise<HeldLock | null> {
    const start = performance.now();
    const joined = join();
    let taken = false;
    try {
      taken = joined !== undefined && (await tryTakeTurn(joined.contender, probe));
    } catch (err) {
      joined?.slot.exit();
      this.deps.telemetry.acquired(name, operation, this.deps.telemetry.acquireOutcome(err, undefined), start);
      throw err;
    }
    if (!joined || !taken) {
      joined?.slot.exit();
      this.deps.telemetry.acquired(name, operation, 'busy', start);
      return null;
    }
    return this.held(name, joined, this.deps.telemetry.acquired(name, operation, 'acquired', start), maxHoldMs);
  }

  /** Acquires with `acquire()`, runs `fn(hold)` inside the hold's context, and releases in every case. */
  async with<T>(fn: (lock: Lock) => T | Promise<T>, acquire: () => Promise<Lock>): Promise<T> {
    assertFunction(fn, 'fn');
    const lock = await acquire();
    try {
      return await runInHold(this.kind, lock, () => fn(lock));
    } finally {
      await lock.release();
    }
  }

  /** Runs `fn` with `lock` as this kind's `current()` hold (a `with*` callback, a guarded method). */
  run<T>(lock: Lock, fn: () => T): T {
    return inHoldContext(this.kind, lock, fn);
  }

  /** The hold of this kind whose `with*` callback or guarded method is running now, if any. */
  current(): Lock | undefined {
    return holdContext(this.kind).getStore();
  }

  /** A contender that needs nothing let go beside its key. */
  static alone(contender: Contender): Joined {
    return { contender, slot: NO_LOCAL_SLOT };
  }

  private held(name: string, joined: Joined, letGo: (() => void) | undefined, maxHoldMs: number | undefined): HeldLock {
    const lock = new HeldLock(name, joined.contender, joined.slot, this.onLost, letGo);
    if (maxHoldMs !== undefined) lock.boundTo(maxHoldMs, this.clock);
    return lock;
  }
}
