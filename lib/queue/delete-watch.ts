import type { IKeyValue } from 'etcd3';
import type { PortWatcher } from '../etcd/etcd-port.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import { type Clock, type ClockTimer, systemClock } from '../clock/clock.js';
import { readRevision, rewatch } from '../etcd/resilient-watch.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
/** A name's watch outlives its last subscriber this long, so a contended name's next cycle costs no watch message. */
const LINGER_MS = 2000;
/**
 * After this many holds in a row with no waiter, a name's watch goes when the hold ends: kept, it would be told of
 * every later release of a name that nobody waits for any more.
 */
const HOLDER_ONLY_CYCLES = 8;
/**
 * How long a contender that owns its name from the join on goes without a watch. Most holds of an uncontended name
 * end sooner and never cost a watch, nor the event of their own release. The watch starts at the join's revision
 * + 1 either way, so a deletion meanwhile is replayed to it, only later: by this much plus etcd's catch-up of a
 * watch that starts behind (it replays history every 100 ms). None where a watch costs nothing (in memory).
 */
const HOLDER_WATCH_DELAY_MS = 20;

/** Told about every deletion under one name, and asked to re-read etcd when deletions may have been missed. */
export interface DeleteSubscriber {
  onDelete(key: string, revision: bigint): void;
  /** The watch restarted (e.g. etcd compacted the revisions it was replaying): re-read state from etcd. */
  onResync(): void;
}

/** The watch of one name: deletions under `<kind prefix><name>/`, and who listens to them. */
interface NameWatch {
  readonly name: string;
  watcher: PortWatcher | undefined;
  /** Set once etcd confirmed the watch. */
  connected: boolean;
  /** Callers of `watching` until then (tests only: no promise per watch otherwise); told false if it never is. */
  onConnected: Array<(connected: boolean) => void> | undefined;
  /** Usually one (an array is lighter than a Set: 10,000 held names have one each). */
  readonly subscribers: DeleteSubscriber[];
  linger: NodeJS.Timeout | undefined;
  /** A waiter asked for the watch since the name was last left. */
  wanted: boolean;
  /** Times in a row the name was left with no waiter since the time before. */
  holderOnly: number;
  /** A watch to create later (`watchFrom` with a delay), from the oldest revision asked for. */
  deferred: { from: bigint; timer: ClockTimer } | undefined;
}

/**
 * Deletion watches scoped to interest: one per name this instance waits on or holds, so a replica receives no
 * event for other replicas' locks and its cost does not grow with the fleet. All are multiplexed on the etcd
 * client's one watch stream. Subscribe before the request that puts your key (deletions that a lingering watch
 * delivers meanwhile are then yours), and once that request answered call `watchFrom(name, revision + 1)`: a new
 * watch starts there, so no deletion after the request is missed and the request still costs one round trip.
 * A holder asks for its watch `HOLDER_WATCH_DELAY_MS` later: from the same revision, so it misses nothing.
 */
export class DeleteWatch {
  private readonly names = new Map<string, NameWatch>();
  private closed = false;
  /** How long a holder waits for its watch, on the module's clock. */
  private readonly holderDelayMs: number;
  /** The name each watcher serves, for the listeners below: shared by every watcher, so a name costs no closures. */
  private readonly served = new WeakMap<PortWatcher, NameWatch>();
  private readonly listeners: {
    connected(this: PortWatcher): void;
    delete(this: PortWatcher, kv: IKeyValue): void;
    error(this: PortWatcher, err: unknown): void;
  };

  constructor(
    private readonly rpc: EtcdPort,
    private readonly kindPrefix: string,
    private readonly onError: (err: unknown) => void,
    private readonly clock: Clock = systemClock,
  ) {
    this.holderDelayMs = rpc.freeWatches ? 0 : HOLDER_WATCH_DELAY_MS;
    const watches = this;
    this.listeners = {
      connected() {
        const entry = watches.served.get(this);
        if (!entry) return;
        entry.connected = true;
        for (const resolve of entry.onConnected?.splice(0) ?? []) resolve(true);
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

  /** Number of names watched now (lingering ones included). */
  get size(): number {
    return this.names.size;
  }

  subscribe(name: string, subscriber: DeleteSubscriber): void {
    const entry = this.entry(name);
    clearTimeout(entry.linger);
    entry.linger = undefined;
    entry.subscribers.push(subscriber);
  }

  unsubscribe(name: string, subscriber: DeleteSubscriber): void {
    const entry = this.names.get(name);
    const index = entry?.subscribers.indexOf(subscriber) ?? -1;
    if (!entry || index < 0) return;
    entry.subscribers.splice(index, 1);
    if (entry.subscribers.length > 0) return;
    if (!entry.watcher) {
      // Never watched (a short hold, or a tryAcquire that found the name taken): nothing to keep.
      this.forget(entry);
      return;
    }
    entry.holderOnly = entry.wanted ? 0 : entry.holderOnly + 1;
    entry.wanted = false;
    if (entry.holderOnly >= HOLDER_ONLY_CYCLES) {
      void this.drop(entry);
      return;
    }
    entry.linger = setTimeout(() => {
      if (entry.subscribers.length === 0 && this.names.get(name) === entry) void this.drop(entry);
    }, LINGER_MS);
    entry.linger.unref();
  }

  /** @internal For tests: resolves once etcd confirmed the watch of `name`, a deferred one included (false: it has none). */
  async watching(name: string): Promise<boolean> {
    const entry = this.names.get(name);
    if (!entry || (!entry.watcher && !entry.deferred)) return false;
    if (entry.connected) return true;
    entry.onConnected ??= [];
    const waiting = entry.onConnected;
    return new Promise<boolean>((resolve) => waiting.push(resolve));
  }

  /**
   * Makes sure `name` is watched; a new watch starts at `fromRevision` (inclusive): now, or for a `holder` (who
   * waits for nobody) after `holderDelayMs`. Asked again meanwhile, it starts at the oldest revision asked for, at
   * the earliest time asked for.
   */
  watchFrom(name: string, fromRevision: bigint, holder = false): void {
    const delayMs = holder ? this.holderDelayMs : 0;
    const entry = this.names.get(name);
    if (!entry) return;
    if (!holder) entry.wanted = true;
    if (entry.watcher || this.closed) return;
    const deferred = entry.deferred;
    const from = deferred && deferred.from < fromRevision ? deferred.from : fromRevision;
    if (deferred && delayMs > 0) {
      deferred.from = from;
      return;
    }
    deferred?.timer.cancel();
    entry.deferred = undefined;
    if (delayMs === 0) {
      this.create(entry, from);
      return;
    }
    const timer = this.clock.setTimer(
      () => {
        const later = entry.deferred;
        entry.deferred = undefined;
        if (later && !entry.watcher && !this.closed && this.names.get(name) === entry) this.create(entry, later.from);
      },
      delayMs,
      { unref: true },
    );
    entry.deferred = { from, timer };
  }

  /**
   * Stops every watch. With `cancel: false` (the client is closed next, which ends them all in etcd at once) no
   * cancel is sent: thousands of cancels on one stream keep etcd busy for seconds after a shutdown.
   */
  async close({ cancel = true } = {}): Promise<void> {
    this.closed = true;
    await Promise.all([...this.names.values()].map((entry) => this.drop(entry, cancel)));
  }

  private entry(name: string): NameWatch {
    let entry = this.names.get(name);
    if (!entry) {
      entry = {
        name,
        watcher: undefined,
        connected: false,
        onConnected: undefined,
        subscribers: [],
        linger: undefined,
        wanted: false,
        holderOnly: 0,
        deferred: undefined,
      };
      this.names.set(name, entry);
    }
    return entry;
  }

  /** Removes the entry; a deferred watch is never made, and whoever waits for it is told so. */
  private forget(entry: NameWatch): void {
    clearTimeout(entry.linger);
    entry.deferred?.timer.cancel();
    entry.deferred = undefined;
    if (this.names.get(entry.name) === entry) this.names.delete(entry.name);
    for (const resolve of entry.onConnected?.splice(0) ?? []) resolve(false);
  }

  private async drop(entry: NameWatch, cancel = true): Promise<void> {
    this.forget(entry);
    const watcher = entry.watcher;
    entry.watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    watcher.on('error', () => undefined);
    if (cancel) await watcher.cancel();
  }

  private create(entry: NameWatch, fromRevision: bigint): void {
    const watcher = this.rpc.watch({ prefix: `${this.kindPrefix}${entry.name}/`, startRevision: fromRevision, onlyDeletes: true });
    entry.watcher = watcher;
    this.served.set(watcher, entry);
    // Shared listeners, and `connected` only until it fires.
    watcher.once('connected', this.listeners.connected);
    watcher.on('delete', this.listeners.delete);
    watcher.on('error', this.listeners.error);
  }

  private dispatch(entry: NameWatch, kv: IKeyValue): void {
    const key = kv.key.toString();
    const revision = BigInt(kv.mod_revision);
    for (const subscriber of [...entry.subscribers]) subscriber.onDelete(key, revision);
  }

  /**
   * etcd cancelled the watch (compaction, or a member lost its state): start over from now and resync. Told to
   * `onError` once per outage, however many tries it takes. Waiters stay correct meanwhile: they only act on
   * deletions they were told of.
   */
  private async restart(entry: NameWatch, old: PortWatcher, err: unknown): Promise<void> {
    const live = () => !this.closed && entry.watcher === old && this.names.get(entry.name) === entry;
    if (!live()) return;
    this.onError(err);
    old.removeAllListeners();
    old.on('error', () => undefined);
    let resumed = false;
    await rewatch(
      () => readRevision(this.rpc, this.kindPrefix),
      live,
      (from) => {
        this.create(entry, from);
        resumed = true;
      },
      new Backoff(RETRY_MIN_MS, RETRY_MAX_MS),
    );
    if (resumed) for (const subscriber of [...entry.subscribers]) subscriber.onResync();
  }
}
