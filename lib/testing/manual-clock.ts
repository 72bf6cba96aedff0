import type { Clock, ClockTimer } from '../clock/clock.js';
import { InvalidArgumentError } from '../errors.js';

interface PendingTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** How many event-loop turns run between two timers: enough for an answer's promise chain to settle. */
const SETTLE_TURNS = 4;

/**
 * A clock that moves only when a test says so: pass it as the `clock` option of `EtcdLockTestingModule.forRoot`
 * (and to `new InMemoryEtcd({ clock })` if you make the etcd yourself) and the session's keepalives and deadline,
 * leases' expiry, `acquire` timeouts, `minHoldMs` and scheduled jobs' fire times all follow it. `advance(ms)` fires
 * every timer due in that span in time order, letting the answers and callbacks each one causes run before the
 * next; nothing else moves it. It does not replace the process's timers (`setTimeout`, `Date`): your own code and
 * other libraries keep the system's time.
 */
export class ManualClock implements Clock {
  private wall: number;
  private elapsed = 0;
  private seq = 0;
  private readonly timers = new Set<PendingTimer>();

  /** Starts at `start` (a `Date` or epoch milliseconds; default 2026-01-01T00:00:00Z). */
  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    const ms = typeof start === 'number' ? start : start.getTime();
    if (!Number.isFinite(ms)) throw new InvalidArgumentError('start', `must be a valid date or epoch milliseconds, got ${String(start)}`);
    this.wall = ms;
  }

  now(): number {
    return this.wall;
  }

  monotonic(): number {
    return this.elapsed;
  }

  setTimer(fn: () => void, ms: number): ClockTimer {
    const timer: PendingTimer = { at: this.elapsed + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  /** How many timers are set and not yet fired. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time on by `ms`, firing every timer due by then in order (timers set by those callbacks too, if due),
   * with the callbacks' promise chains settled between timers. Resolves once time stands at the new instant.
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError('ms', `must be a finite number >= 0, got ${String(ms)}`);
    const until = this.elapsed + ms;
    await settle();
    for (let next = this.nextDue(until); next; next = this.nextDue(until)) {
      this.moveTo(next.at);
      this.timers.delete(next);
      next.fn();
      await settle();
    }
    this.moveTo(until);
    await settle();
  }

  /** Moves time on to `instant` (a `Date` or epoch milliseconds), as `advance` does; never backwards. */
  advanceTo(instant: Date | number): Promise<void> {
    const ms = (typeof instant === 'number' ? instant : instant.getTime()) - this.wall;
    if (!(ms >= 0)) throw new InvalidArgumentError('instant', `must not be before the clock's time (${new Date(this.wall).toISOString()})`);
    return this.advance(ms);
  }

  /** Fires only the timers due now (after `setTimer(fn, 0)`), with their chains settled. */
  runDue(): Promise<void> {
    return this.advance(0);
  }

  private nextDue(until: number): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const timer of this.timers) {
      if (timer.at > until) continue;
      if (!best || timer.at < best.at || (timer.at === best.at && timer.seq < best.seq)) best = timer;
    }
    return best;
  }

  private moveTo(elapsed: number): void {
    this.wall += elapsed - this.elapsed;
    this.elapsed = elapsed;
  }
}

/** Lets pending promise jobs and one round of I/O callbacks run, a few times over. */
async function settle(): Promise<void> {
  for (let i = 0; i < SETTLE_TURNS; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
