import type { EtcdPort, PortWatcher } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import { type Clock, type ClockTimer, systemClock } from '../clock/clock.js';
import { readRevision, rewatch } from '../etcd/resilient-watch.js';
import { type DeleteSubscriber, KeyWatch, type KeyWatchOwner, type Subscription, WANTED } from './key-watch.js';

export type { DeleteSubscriber } from './key-watch.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
/** A key's watch outlives its last subscriber this long, so a contended name's next cycle costs no watch message. */
const LINGER_MS = 2000;
/**
 * After this many holds in a row with no waiter, a key's watch goes when the hold ends: kept, it would be told of
 * every later release of a key that nobody waits for any more.
 */
const HOLDER_ONLY_CYCLES = 8;
/**
 * How long a contender that owns its name from the join on goes without a watch of its own key. Most holds of an
 * uncontended name end sooner and never cost a watch, nor the event of their own release. The watch starts at the
 * join's revision + 1 either way, so a deletion meanwhile is replayed to it, only later: by this much plus etcd's
 * catch-up of a watch that starts behind (it replays history every 100 ms). None where a watch costs nothing.
 */
const HOLDER_WATCH_DELAY_MS = 20;

/**
 * Deletion watches of single keys: a contender watches its own key (to know when it stops being its own) and,
 * while it waits, the few keys just ahead of it that it waits for (etcd's `Mutex` waits on the key just ahead),
 * never the whole name. So a release wakes the process next in line, not every process waiting on the name, and a
 * replica receives no event for names it does not use. All are multiplexed on the etcd client's one watch stream.
 *
 * A waiter's watch starts "from now" (a watch that starts behind the store waits up to 100 ms for etcd's catch-up
 * loop); if now is past the revision the subscriber knows the key existed at, it is asked to check the key
 * (`onGap`). A holder's own watch starts at its join's revision + 1, `HOLDER_WATCH_DELAY_MS` later: it misses
 * nothing, and it is not in a hurry.
 */
export class DeleteWatch implements KeyWatchOwner {
  private readonly keys = new Map<string, KeyWatch>();
  /** Callers of `watching` until etcd confirmed the watch (tests only); told false if it never is. */
  private readonly confirming = new Map<KeyWatch, Array<(connected: boolean) => void>>();
  private closed = false;
  /** How long a holder waits for its watch, on the module's clock. */
  private readonly holderDelayMs: number;
  /** Holders' watches to make later, in the order they were asked for (so the first is due first). */
  private readonly deferred = new Set<KeyWatch>();
  /**
   * One timer for every deferred watch, not one per hold: most holds end before their watch is due, and a timer
   * made at each acquire and cancelled at each release was work on every one of them (10,000 short holds a second
   * made and cancelled 10,000 timers; now at most 50 fire). Left to fire when its holds have ended: it finds
   * nothing due then.
   */
  private deferTimer: ClockTimer | undefined;
  /**
   * `keysReused`: whether a key name comes back after its deletion (a lock's `<name>/<lease hex>` does at its
   * holder's next take). Where every key is new (a permit's or a read or write lock's, named by a sequence), a
   * watch goes with its last subscriber: lingering, it would never serve again (1,000 read holds a second, each
   * past the holder's delay, kept 2,000 watches open in etcd).
   */
  constructor(
    private readonly rpc: EtcdPort,
    private readonly kindPrefix: string,
    private readonly onError: (err: unknown) => void,
    private readonly clock: Clock = systemClock,
    private readonly keysReused = true,
  ) {
    this.holderDelayMs = rpc.freeWatches ? 0 : HOLDER_WATCH_DELAY_MS;
  }

  /** Number of keys watched now (lingering ones included). */
  get size(): number {
    return this.keys.size;
  }

  /**
   * Tells `subscriber` of every deletion of `key` from revision `from` on (the subscriber knows the key existed
   * just before). A `holder` watching its own key gets a watch that replays from `from`, after `holderDelayMs`.
   */
  subscribe(key: string, subscriber: DeleteSubscriber, from: bigint, holder = false): void {
    const entry = this.entry(key);
    entry.add(subscriber, from);
    clearTimeout(entry.linger);
    entry.linger = undefined;
    if (!holder) entry.holderOnly = WANTED;
    if (entry.watcher) {
      // A watch made earlier may have reported the deletion already, or may start after `from`: told on the next
      // microtask (before any other event), not inside the subscriber's own call.
      if (entry.coveredFrom !== undefined && (entry.lastDelete >= from || entry.coveredFrom > from)) {
        queueMicrotask(() => {
          const subscription = entry.subscriptionOf(subscriber);
          if (subscription?.from === from) this.tell(entry, subscription);
        });
      }
      return;
    }
    if (this.closed) return;
    if (holder && this.holderDelayMs > 0) {
      this.defer(entry, from);
      return;
    }
    const deferredFrom = this.undefer(entry);
    // In memory a replay costs nothing and never waits; on etcd a waiter's watch starts now (see the class).
    if (this.rpc.freeWatches || holder) this.create(entry, deferredFrom !== undefined && deferredFrom < from ? deferredFrom : from);
    else this.create(entry, 0n);
  }

  unsubscribe(key: string, subscriber: DeleteSubscriber): void {
    const entry = this.keys.get(key);
    if (!entry?.remove(subscriber) || entry.size > 0) return;
    if (!entry.watcher) {
      // Never watched (a short hold, or a tryAcquire that found the name taken): nothing to keep.
      this.forget(entry);
      return;
    }
    entry.holderOnly = entry.holderOnly === WANTED ? 0 : entry.holderOnly + 1;
    if (!this.keysReused || entry.holderOnly >= HOLDER_ONLY_CYCLES) {
      void this.drop(entry);
      return;
    }
    entry.linger = setTimeout(() => {
      if (entry.size === 0 && this.keys.get(key) === entry) void this.drop(entry);
    }, LINGER_MS);
    entry.linger.unref();
  }

  /** @internal For tests: resolves once etcd confirmed the watch of `key`, a deferred one included (false: it has none). */
  async watching(key: string): Promise<boolean> {
    const entry = this.keys.get(key);
    if (!entry || (!entry.watcher && !entry.deferred)) return false;
    if (entry.coveredFrom !== undefined) return true;
    const waiting = this.confirming.get(entry) ?? [];
    this.confirming.set(entry, waiting);
    return new Promise<boolean>((resolve) => waiting.push(resolve));
  }

  /** @internal For tests: the keys watched now. */
  watchedKeys(): string[] {
    return [...this.keys.keys()];
  }

  /**
   * Stops every watch. With `cancel: false` (the client is closed next, which ends them all in etcd at once) no
   * cancel is sent: thousands of cancels on one stream keep etcd busy for seconds after a shutdown.
   */
  async close({ cancel = true } = {}): Promise<void> {
    this.closed = true;
    this.deferTimer?.cancel();
    this.deferTimer = undefined;
    await Promise.all([...this.keys.values()].map((entry) => this.drop(entry, cancel)));
  }

  private entry(key: string): KeyWatch {
    let entry = this.keys.get(key);
    if (!entry) {
      entry = new KeyWatch(key, this);
      this.keys.set(key, entry);
    }
    return entry;
  }

  /** A holder's watch, made `holderDelayMs` from now (or at once if a waiter asks meanwhile). */
  private defer(entry: KeyWatch, from: bigint): void {
    if (entry.deferred) {
      if (from < entry.deferred.from) entry.deferred.from = from;
      return;
    }
    entry.deferred = { from, due: this.clock.monotonic() + this.holderDelayMs };
    this.deferred.add(entry);
    this.armDeferTimer(this.holderDelayMs);
  }

  /** The deferred watch of `entry` will not be made (a waiter's comes now, or nobody needs it): from where it was due. */
  private undefer(entry: KeyWatch): bigint | undefined {
    const from = entry.deferred?.from;
    entry.deferred = undefined;
    this.deferred.delete(entry);
    return from;
  }

  private armDeferTimer(ms: number): void {
    if (this.deferTimer || this.closed) return;
    this.deferTimer = this.clock.setTimer(() => this.makeDueWatches(), ms, { unref: true });
  }

  /** Makes the deferred watches that are due, and waits for the next one. */
  private makeDueWatches(): void {
    this.deferTimer = undefined;
    const now = this.clock.monotonic();
    // Every entry in the set has its `deferred` (`undefer` takes both away together).
    for (const entry of this.deferred) {
      const { due, from } = entry.deferred as NonNullable<KeyWatch['deferred']>;
      if (due > now) {
        this.armDeferTimer(due - now);
        return;
      }
      this.undefer(entry);
      if (!entry.watcher && !this.closed && this.keys.get(entry.key) === entry) this.create(entry, from);
    }
  }

  /** Removes the entry; a deferred watch is never made, and whoever waits for it is told so. */
  private forget(entry: KeyWatch): void {
    clearTimeout(entry.linger);
    this.undefer(entry);
    if (this.keys.get(entry.key) === entry) this.keys.delete(entry.key);
    this.confirmed(entry, false);
  }

  private async drop(entry: KeyWatch, cancel = true): Promise<void> {
    this.forget(entry);
    const watcher = entry.watcher;
    entry.watcher = undefined;
    if (!watcher) return;
    // A watcher cancelled tells its sink nothing more; one left to the client's close is ignored once closed.
    if (cancel) await watcher.cancel();
  }

  /** A watch of the key from `fromRevision` (a replay), or from now (`0n`: its start is known once connected). */
  private create(entry: KeyWatch, fromRevision: bigint): void {
    entry.coveredFrom = undefined;
    entry.replayFrom = fromRevision;
    entry.watcher = this.rpc.watch({ prefix: entry.key, exact: true, startRevision: fromRevision, onlyDeletes: true }, entry);
  }

  /** Tells the callers of `watching(entry.key)` whether its watch was confirmed. */
  private confirmed(entry: KeyWatch, connected: boolean): void {
    const waiting = this.confirming.get(entry);
    this.confirming.delete(entry);
    for (const resolve of waiting ?? []) resolve(connected);
  }

  /** @internal The watch reports every deletion from `coveredFrom` on: subscribers that needed earlier ones check the key. */
  covered(entry: KeyWatch, coveredFrom: bigint): void {
    if (this.closed) return; // a watch left to the client's close (see `close`) tells no one
    entry.coveredFrom = coveredFrom;
    this.confirmed(entry, true);
    for (const subscription of entry.subscriptions()) this.tell(entry, subscription);
  }

  /** What a subscriber must hear now: a deletion reported before it came, or that the watch started too late. */
  private tell(entry: KeyWatch, { subscriber, from }: Subscription): void {
    if (entry.lastDelete >= from) subscriber.onDelete(entry.key, entry.lastDelete);
    else if ((entry.coveredFrom ?? 0n) > from) subscriber.onGap(entry.key);
  }

  /** @internal The watch reported the key's deletion at `revision`. */
  deleted(entry: KeyWatch, revision: bigint): void {
    if (this.closed) return;
    if (revision > entry.lastDelete) entry.lastDelete = revision;
    for (const { subscriber } of entry.subscriptions()) subscriber.onDelete(entry.key, revision);
  }

  /** @internal etcd cancelled the watch of `entry`. */
  failed(entry: KeyWatch, err: unknown): void {
    const old = entry.watcher;
    if (old) void this.restart(entry, old, err);
  }

  /**
   * etcd cancelled the watch (compaction, or a member lost its state): start over from now; every subscriber
   * that needed earlier revisions checks its key. Told to `onError` once per outage, however many tries it takes.
   */
  private async restart(entry: KeyWatch, old: PortWatcher, err: unknown): Promise<void> {
    const live = () => !this.closed && entry.watcher === old && this.keys.get(entry.key) === entry;
    if (!live()) return;
    this.onError(err);
    // Once the new watch is confirmed, each subscriber that needed earlier revisions is asked to check (`tell`).
    await rewatch(
      () => readRevision(this.rpc, this.kindPrefix),
      live,
      (from) => this.create(entry, from),
      new Backoff(RETRY_MIN_MS, RETRY_MAX_MS),
    );
  }
}
