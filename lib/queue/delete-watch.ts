import type { IWatchResponse } from 'etcd3';
import type { PortWatcher } from '../etcd/etcd-port.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import { withTimeout } from '../util/wait-signal.js';

const CANCEL_TIMEOUT_MS = 1000;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
/** A name's watch outlives its last subscriber this long, so a hot name's next cycle costs no watch message. */
const LINGER_MS = 2000;

/** Told about every deletion under one name, and asked to re-read etcd when deletions may have been missed. */
export interface DeleteSubscriber {
  onDelete(key: string, revision: bigint): void;
  /** The watch restarted (e.g. etcd compacted the revisions it was replaying): re-read state from etcd. */
  onResync(): void;
}

/** The watch of one name: deletions under `<kind prefix><name>/`, and who listens to them. */
interface NameWatch {
  watcher: PortWatcher | undefined;
  /** Resolves once etcd confirmed the watch. */
  created: Promise<void> | undefined;
  readonly subscribers: Set<DeleteSubscriber>;
  linger: NodeJS.Timeout | undefined;
}

/**
 * Deletion watches scoped to interest: one per name this instance waits on or holds, so a replica receives no
 * event for other replicas' locks and its cost does not grow with the fleet. All are multiplexed on the etcd
 * client's one watch stream. Subscribe before the request that puts your key (deletions that a lingering watch
 * delivers meanwhile are then yours), and once that request answered call `watchFrom(name, revision + 1)`: a new
 * watch starts there, so no deletion after the request is missed and the request still costs one round trip.
 */
export class DeleteWatch {
  private readonly names = new Map<string, NameWatch>();
  private closed = false;

  constructor(
    private readonly rpc: EtcdPort,
    private readonly kindPrefix: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Number of names watched now (lingering ones included). */
  get size(): number {
    return this.names.size;
  }

  subscribe(name: string, subscriber: DeleteSubscriber): () => void {
    const entry = this.entry(name);
    clearTimeout(entry.linger);
    entry.linger = undefined;
    entry.subscribers.add(subscriber);
    return () => {
      if (!entry.subscribers.delete(subscriber) || entry.subscribers.size > 0 || this.names.get(name) !== entry) return;
      if (!entry.watcher) {
        this.names.delete(name); // never watched (e.g. a tryAcquire that found the name taken): nothing to keep
        return;
      }
      entry.linger = setTimeout(() => {
        if (entry.subscribers.size === 0 && this.names.get(name) === entry) void this.drop(name, entry);
      }, LINGER_MS);
      entry.linger.unref();
    };
  }

  /** @internal For tests: resolves once etcd confirmed the watch of `name` (false: it has none). */
  async watching(name: string): Promise<boolean> {
    const created = this.names.get(name)?.created;
    if (!created) return false;
    await created;
    return true;
  }

  /** Makes sure `name` is watched; a new watch starts at `fromRevision` (inclusive). */
  watchFrom(name: string, fromRevision: bigint): void {
    const entry = this.names.get(name);
    if (!entry || entry.watcher || this.closed) return;
    this.create(name, entry, fromRevision);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.names].map(([name, entry]) => this.drop(name, entry)));
  }

  private entry(name: string): NameWatch {
    let entry = this.names.get(name);
    if (!entry) {
      entry = { watcher: undefined, created: undefined, subscribers: new Set(), linger: undefined };
      this.names.set(name, entry);
    }
    return entry;
  }

  private async drop(name: string, entry: NameWatch): Promise<void> {
    clearTimeout(entry.linger);
    if (this.names.get(name) === entry) this.names.delete(name);
    const watcher = entry.watcher;
    entry.watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    watcher.on('error', () => undefined);
    // Bounded: etcd3 can leave a cancel unanswered (a watch etcd refused never settles).
    await withTimeout(watcher.cancel(), CANCEL_TIMEOUT_MS, () => new Error('cancel')).catch(() => undefined);
  }

  private create(name: string, entry: NameWatch, fromRevision: bigint): void {
    const watcher = this.rpc.watch({ prefix: `${this.kindPrefix}${name}/`, startRevision: fromRevision, onlyDeletes: true });
    entry.watcher = watcher;
    entry.created = new Promise((resolve) => watcher.once('connected', () => resolve()));
    watcher.on('data', (res: IWatchResponse) => this.dispatch(entry, res));
    watcher.on('error', (err) => void this.restart(name, entry, watcher, err));
  }

  private dispatch(entry: NameWatch, res: IWatchResponse): void {
    for (const event of res.events) {
      if (event.type !== 'Delete') continue;
      const key = event.kv.key.toString();
      const revision = BigInt(event.kv.mod_revision);
      for (const subscriber of [...entry.subscribers]) subscriber.onDelete(key, revision);
    }
  }

  /**
   * etcd cancelled the watch (compaction, or a member lost its state): start over from now and resync. Told to
   * `onError` once per outage, however many tries it takes.
   */
  private async restart(name: string, entry: NameWatch, old: PortWatcher, err: unknown, backoff?: Backoff): Promise<void> {
    if (this.closed || entry.watcher !== old || this.names.get(name) !== entry) return;
    if (!backoff) this.onError(err);
    old.removeAllListeners();
    old.on('error', () => undefined);
    try {
      const res = await this.rpc.range({ key: Buffer.from(this.kindPrefix), count_only: true }, 'read the revision');
      if (this.closed || entry.watcher !== old) return;
      this.create(name, entry, BigInt(res.header.revision) + 1n);
    } catch (retryErr) {
      if (this.closed) return;
      // Try again shortly: waiters stay correct meanwhile (they only act on deletions they were told of).
      const retry = backoff ?? new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
      const timer = setTimeout(() => void this.restart(name, entry, old, retryErr, retry), retry.next());
      timer.unref();
      return;
    }
    for (const subscriber of [...entry.subscribers]) subscriber.onResync();
  }
}
