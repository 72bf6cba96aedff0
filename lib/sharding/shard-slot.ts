import { ShardLostError, type ShardLossReason } from '../errors.js';
import { FencedTxn } from '../locks/fenced-txn.js';
import type { Contender } from '../queue/contender.js';
import type { Shard } from './shard.interface.js';
import { type Clock, sleepOn } from '../clock/clock.js';

/**
 * This instance's place for one shard: a contender in the shard's queue, then its owner. Leaving waits for the
 * runs using the shard (and for `minHoldMs` after the last one started), so its work never overlaps the next
 * owner's.
 */
export class ShardSlot implements Shard {
  private readonly controller = new AbortController();
  private owned = false;
  private readonly runs = new Set<Promise<unknown>>();
  private holdUntil = 0;
  private leaving: Promise<void> | undefined;

  constructor(
    readonly group: string,
    readonly index: number,
    private readonly contender: Contender,
    /** The module's clock: `minHoldMs` and the drain are measured on it. */
    private readonly clock: Clock,
  ) {}

  get fencingToken(): bigint {
    return this.contender.createRevision;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get isOwned(): boolean {
    return this.owned && !this.controller.signal.aborted && this.contender.isOwner;
  }

  /** Whether it was ever owned (a slot still queued has nothing to lose). */
  get wasOwned(): boolean {
    return this.owned;
  }

  get isLeaving(): boolean {
    return this.leaving !== undefined;
  }

  fencedTxn(): FencedTxn {
    const slot = this;
    const contender = this.contender;
    return new FencedTxn({
      contender,
      get held() {
        return slot.isOwned;
      },
      lost(fenceFailed) {
        if (fenceFailed) contender.lose('fence-failed');
        slot.end(contender.lostError?.reason ?? 'session-lost');
        return slot.signal.reason as Error;
      },
    });
  }

  /** Joins the shard's queue and resolves once owner; rejects when `signal` aborts or the key is lost first. */
  async take(signal: AbortSignal): Promise<void> {
    await this.contender.join();
    await this.contender.waitForTurn(signal);
    this.owned = true;
  }

  /** Counts a run on this shard: leaving waits for it, and for `minHoldMs` after its start. */
  use(run: Promise<unknown>, minHoldMs: number): void {
    this.holdUntil = Math.max(this.holdUntil, this.clock.monotonic() + minHoldMs);
    this.runs.add(run);
    const forget = () => this.runs.delete(run);
    run.then(forget, forget);
  }

  /** Aborts the signal (the first reason wins). */
  end(reason: ShardLossReason): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new ShardLostError(this.group, this.index, reason, this.fencingToken));
  }

  /**
   * Stops owning: aborts the signal, waits for the runs on the shard (at most `drainMs`) and the hold, then deletes
   * the key so the next owner in the queue takes over.
   */
  leave(reason: ShardLossReason, drainMs: number): Promise<void> {
    this.leaving ??= (async () => {
      this.end(reason);
      if (this.owned && this.contender.isOwner) {
        const deadline = this.clock.monotonic() + drainMs;
        if (this.runs.size > 0) {
          const drained = new AbortController();
          await Promise.race([Promise.allSettled([...this.runs]), sleepOn(this.clock, drainMs, drained.signal).catch(() => undefined)]);
          drained.abort();
        }
        const hold = Math.min(deadline, this.holdUntil) - this.clock.monotonic();
        if (hold > 0) await sleepOn(this.clock, hold);
      }
      await this.contender.leave();
    })();
    return this.leaving;
  }

  /** Called once if the key stops being ours (session lost, deleted from outside). */
  onLoss(listener: (reason: ShardLossReason) => void): void {
    this.contender.onLoss((err) => {
      this.end(err.reason);
      listener(err.reason);
    });
  }
}
