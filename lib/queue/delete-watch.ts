import type { IKeyValue, IWatchResponse } from 'etcd3';
import type { PortWatcher } from '../etcd/etcd-port.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import { type Clock, type ClockTimer, systemClock } from '../clock/clock.js';
import { readRevision, rewatch } from '../etcd/resilient-watch.js';

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

/** Told of the deletion of a key it watches, and asked to check the key when the watch may have missed one. */
export interface DeleteSubscriber {
  onDelete(key: string, revision: bigint): void;
  /**
   * The watch of `key` does not cover every revision since the one the subscriber asked for (it was made "from
   * now", after that revision; or etcd cancelled it and it started over): read the key to know if it is gone.
   */
  onGap(key: string): void;
}

/** One subscriber, and the first revision it must hear of. */
interface Subscription {
  readonly subscriber: DeleteSubscriber;
  readonly from: bigint;
}

/** The watch of one key, and who listens to it. */
interface KeyWatch {
  readonly key: string;
  watcher: PortWatcher | undefined;
  /** The first revision the watcher reports: known at creation for a replay, at `connected` for "from now". */
  coveredFrom: bigint | undefined;
  /** Callers of `watching` until etcd confirmed the watch (tests only); told false if it never is. */
  onConnected: Array<(connected: boolean) => void> | undefined;
  /** Usually one (an array is lighter than a Set: 10,000 held names have one each). */
  readonly subscriptions: Subscription[];
  /** The revision of the last deletion the watcher reported: told to a subscriber that comes later. */
  lastDelete: bigint;
  linger: NodeJS.Timeout | undefined;
  /** A waiter asked for the watch since the key was last left. */
  wanted: boolean;
  /** Times in a row the key was left with no waiter since the time before. */
  holderOnly: number;
  /** A watch to create later (a holder's), from the oldest revision asked for. */
  deferred: { from: bigint; timer: ClockTimer } | undefined;
}

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
export class DeleteWatch {
  private readonly keys = new Map<string, KeyWatch>();
  private closed = false;
  /** How long a holder waits for its watch, on the module's clock. */
  private readonly holderDelayMs: number;
  /** The key each watcher serves, for the listeners below: shared by every watcher, so a key costs no closures. */
  private readonly served = new WeakMap<PortWatcher, KeyWatch>();
  private readonly listeners: {
    connected(this: PortWatcher, res: IWatchResponse): void;
    delete(this: PortWatcher, kv: IKeyValue): void;
    error(this: PortWatcher, err: unknown): void;
  };

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
    const watches = this;
    this.listeners = {
      connected(res) {
        const entry = watches.served.get(this);
        if (entry) watches.connected(entry, BigInt(res.header.revision) + 1n);
      },
      delete(kv) {
        const entry = watches.served.get(this);
        if (entry) watches.dispatch(entry, kv);
      },
      error(err) {
        const entry = watches.served.get(this);
        if (entry) void watches.restart(entry, this, err);
      },
    };
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
    const subscription = { subscriber, from };
    const entry = this.entry(key, subscription);
    clearTimeout(entry.linger);
    entry.linger = undefined;
    if (!holder) entry.wanted = true;
    if (entry.watcher) {
      // A watch made earlier may have reported the deletion already, or may start after `from`: told on the next
      // microtask (before any other event), not inside the subscriber's own call.
      if (entry.coveredFrom !== undefined && (entry.lastDelete >= from || entry.coveredFrom > from)) {
        queueMicrotask(() => entry.subscriptions.includes(subscription) && this.tell(entry, subscription));
      }
      return;
    }
    if (this.closed) return;
    if (holder && this.holderDelayMs > 0) {
      this.defer(entry, from);
      return;
    }
    entry.deferred?.timer.cancel();
    const deferredFrom = entry.deferred?.from;
    entry.deferred = undefined;
    // In memory a replay costs nothing and never waits; on etcd a waiter's watch starts now (see the class).
    if (this.rpc.freeWatches || holder) this.create(entry, deferredFrom !== undefined && deferredFrom < from ? deferredFrom : from);
    else this.create(entry, 0n);
  }

  unsubscribe(key: string, subscriber: DeleteSubscriber): void {
    const entry = this.keys.get(key);
    const index = entry?.subscriptions.findIndex((s) => s.subscriber === subscriber) ?? -1;
    if (!entry || index < 0) return;
    entry.subscriptions.splice(index, 1);
    if (entry.subscriptions.length > 0) return;
    if (!entry.watcher) {
      // Never watched (a short hold, or a tryAcquire that found the name taken): nothing to keep.
      this.forget(entry);
      return;
    }
    entry.holderOnly = entry.wanted ? 0 : entry.holderOnly + 1;
    entry.wanted = false;
    if (!this.keysReused || entry.holderOnly >= HOLDER_ONLY_CYCLES) {
      void this.drop(entry);
      return;
    }
    entry.linger = setTimeout(() => {
      if (entry.subscriptions.length === 0 && this.keys.get(key) === entry) void this.drop(entry);
    }, LINGER_MS);
    entry.linger.unref();
  }

  /** @internal For tests: resolves once etcd confirmed the watch of `key`, a deferred one included (false: it has none). */
  async watching(key: string): Promise<boolean> {
    const entry = this.keys.get(key);
    if (!entry || (!entry.watcher && !entry.deferred)) return false;
    if (entry.coveredFrom !== undefined) return true;
    entry.onConnected ??= [];
    const waiting = entry.onConnected;
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
    await Promise.all([...this.keys.values()].map((entry) => this.drop(entry, cancel)));
  }

  /** The key's entry with `subscription` added; a new entry's list is made with it (an empty list grown by a push
   * reserves room for 16 more: 150 bytes per held lock). */
  private entry(key: string, subscription: Subscription): KeyWatch {
    let entry = this.keys.get(key);
    if (entry) entry.subscriptions.push(subscription);
    else {
      entry = {
        key,
        watcher: undefined,
        coveredFrom: undefined,
        onConnected: undefined,
        subscriptions: [subscription],
        lastDelete: 0n,
        linger: undefined,
        wanted: false,
        holderOnly: 0,
        deferred: undefined,
      };
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
    const timer = this.clock.setTimer(
      () => {
        const later = entry.deferred;
        entry.deferred = undefined;
        if (later && !entry.watcher && !this.closed && this.keys.get(entry.key) === entry) this.create(entry, later.from);
      },
      this.holderDelayMs,
      { unref: true },
    );
    entry.deferred = { from, timer };
  }

  /** Removes the entry; a deferred watch is never made, and whoever waits for it is told so. */
  private forget(entry: KeyWatch): void {
    clearTimeout(entry.linger);
    entry.deferred?.timer.cancel();
    entry.deferred = undefined;
    if (this.keys.get(entry.key) === entry) this.keys.delete(entry.key);
    for (const resolve of entry.onConnected?.splice(0) ?? []) resolve(false);
  }

  private async drop(entry: KeyWatch, cancel = true): Promise<void> {
    this.forget(entry);
    const watcher = entry.watcher;
    entry.watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    watcher.on('error', () => undefined);
    if (cancel) await watcher.cancel();
  }

  /** A watch of the key from `fromRevision` (a replay), or from now (`0n`: its start is known once connected). */
  private create(entry: KeyWatch, fromRevision: bigint): void {
    const watcher = this.rpc.watch({
      prefix: entry.key,
      exact: true,
      startRevision: fromRevision,
      onlyDeletes: true,
    });
    entry.watcher = watcher;
    entry.coveredFrom = undefined;
    this.served.set(watcher, entry);
    const replayFrom = fromRevision;
    // Shared listeners, and `connected` only until it fires.
    watcher.once('connected', replayFrom === 0n ? this.listeners.connected : () => this.connected(entry, replayFrom));
    watcher.on('delete', this.listeners.delete);
    watcher.on('error', this.listeners.error);
  }

  /** The watch reports every deletion from `coveredFrom` on: subscribers that needed earlier ones check the key. */
  private connected(entry: KeyWatch, coveredFrom: bigint): void {
    entry.coveredFrom = coveredFrom;
    for (const resolve of entry.onConnected?.splice(0) ?? []) resolve(true);
    for (const subscription of [...entry.subscriptions]) this.tell(entry, subscription);
  }

  /** What a subscriber must hear now: a deletion reported before it came, or that the watch started too late. */
  private tell(entry: KeyWatch, { subscriber, from }: Subscription): void {
    if (entry.lastDelete >= from) subscriber.onDelete(entry.key, entry.lastDelete);
    else if ((entry.coveredFrom ?? 0n) > from) subscriber.onGap(entry.key);
  }

  private dispatch(entry: KeyWatch, kv: IKeyValue): void {
    const revision = BigInt(kv.mod_revision);
    if (revision > entry.lastDelete) entry.lastDelete = revision;
    for (const { subscriber } of [...entry.subscriptions]) subscriber.onDelete(entry.key, revision);
  }

  /**
   * etcd cancelled the watch (compaction, or a member lost its state): start over from now; every subscriber
   * that needed earlier revisions checks its key. Told to `onError` once per outage, however many tries it takes.
   */
  private async restart(entry: KeyWatch, old: PortWatcher, err: unknown): Promise<void> {
    const live = () => !this.closed && entry.watcher === old && this.keys.get(entry.key) === entry;
    if (!live()) return;
    this.onError(err);
    old.removeAllListeners();
    old.on('error', () => undefined);
    // Once the new watch is confirmed, each subscriber that needed earlier revisions is asked to check (`tell`).
    await rewatch(
      () => readRevision(this.rpc, this.kindPrefix),
      live,
      (from) => this.create(entry, from),
      new Backoff(RETRY_MIN_MS, RETRY_MAX_MS),
    );
  }
}
