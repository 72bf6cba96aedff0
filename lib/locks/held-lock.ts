import type { Clock, ClockTimer } from '../clock/clock.js';
import type { Contender } from '../queue/contender.js';
import type { LocalSlot } from '../queue/local-queue.js';
import { LockLostError, LockReleasedError } from '../errors.js';
import { FencedTxn, lockFence } from './fenced-txn.js';
import type { Lock } from './lock.interface.js';
import { assertValue } from '../util/validation.js';

/** The `Lock` handed to callers: a contender that owns its name, plus the local queue slot it occupies. */
export class HeldLock implements Lock {
  /** Made on first use of `signal`: most callers never read it, and an AbortController plus a reason per
   * release cost a measurable share of an uncontended acquire/release cycle. */
  private controller: AbortController | undefined;
  /** Why the signal is (or would be) aborted: loss, or our own release. */
  private ended: (() => Error) | undefined;
  private releasing: Promise<void> | undefined;
  private maxHoldTimer: ClockTimer | undefined;
  /** Set while a `with*` callback runs on it: at `maxHoldMs` the release waits for the callback to settle. */
  private workRunning = false;

  constructor(
    /** The name the caller gave (a scheduled job's, whose contender holds a name of its own per fire time). */
    readonly name: string,
    private readonly contender: Contender,
    /** Its turn in an in-process queue: given back once the key is deleted. */
    private readonly localSlot: LocalSlot,
    private readonly onLost: (lock: HeldLock, err: LockLostError) => void,
    /** Told once when the lock is let go (released or lost): the hold-time metric. */
    private readonly onLetGo?: () => void,
  ) {
    // The lock itself listens (`keyLost`): no closure per held lock.
    contender.onLoss(this);
  }

  /** @internal The contender's key stopped being ours. */
  keyLost(err: LockLostError): void {
    if (this.releasing) return;
    this.end(() => err);
    this.onLost(this, err);
  }

  /**
   * Bounds the hold to `ms` (`maxHoldMs`): then the signal aborts with `LockLostError` reason `max-hold`, and the
   * lock is released at once, or, inside a `with*` callback, once the callback settles.
   */
  boundTo(ms: number, clock: Clock): void {
    this.maxHoldTimer = clock.setTimer(() => this.expire(), ms, { unref: true });
  }

  /** Runs `work` (a `with*` callback) so that a `maxHoldMs` release waits for it to settle. */
  async whileWorking<T>(work: () => Promise<T>): Promise<T> {
    this.workRunning = true;
    try {
      return await work();
    } finally {
      this.workRunning = false;
    }
  }

  get key(): string {
    return this.contender.key;
  }

  get value(): string {
    return this.contender.value;
  }

  get fencingToken(): bigint {
    return this.contender.createRevision;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.ended) this.controller.abort(this.ended());
    }
    return this.controller.signal;
  }

  get isHeld(): boolean {
    return this.releasing === undefined && this.contender.isOwner;
  }

  release(): Promise<void> {
    this.releasing ??= this.doRelease();
    return this.releasing;
  }

  async setValue(value: string): Promise<void> {
    assertValue(value);
    await this.contender.setValue(value);
  }

  fencedTxn(): FencedTxn {
    return new FencedTxn(lockFence(this.contender));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  private expire(): void {
    if (this.releasing || this.ended) return;
    const err = new LockLostError(this.name, 'max-hold');
    this.end(() => err);
    this.onLost(this, err);
    if (!this.workRunning) void this.release().catch(() => undefined);
  }

  /** The first end wins: a lock lost and then released keeps its LockLostError. */
  private end(reason: () => Error): void {
    if (this.ended) return;
    this.ended = reason;
    this.maxHoldTimer?.cancel();
    this.onLetGo?.();
    this.controller?.abort(reason());
  }

  private async doRelease(): Promise<void> {
    this.end(() => new LockReleasedError(this.name));
    try {
      await this.contender.leave();
    } finally {
      // Only now may the next caller in this process put the same key again.
      this.localSlot.exit();
    }
  }
}
