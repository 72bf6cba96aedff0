import type { IWatchResponse, Watcher } from 'etcd3';
import type { EtcdRpc } from './etcd-rpc.js';
import { withTimeout } from './wait-signal.js';

const CANCEL_TIMEOUT_MS = 1000;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

/** Told about every deletion under one name, and asked to re-read etcd when deletions may have been missed. */
export interface DeleteSubscriber {
  onDelete(key: string, revision: bigint): void;
  /** The watch restarted (e.g. etcd compacted the revisions it was replaying): re-read state from etcd. */
  onResync(): void;
}

/**
 * One watch per instance on all keys of one kind (`<prefix>lock/`), deletions only. Waiters and holders
 * subscribe by name, so acquiring creates no watch of its own and a handover costs a single watch event.
 * Subscribe before the request that puts your key: any deletion after that request's revision is then
 * dispatched to you, whichever etcd member the watch stream and the request went to.
 */
export class DeleteWatch {
  private watcher: Watcher | undefined;
  private readonly byName = new Map<string, Set<DeleteSubscriber>>();
  private closed = false;
  private starting: Promise<void> | undefined;

  constructor(
    private readonly rpc: EtcdRpc,
    private readonly kindPrefix: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Starts watching from `fromRevision` (inclusive). Idempotent while running. */
  start(fromRevision: bigint): Promise<void> {
    this.starting ??= this.create(fromRevision);
    return this.starting;
  }

  subscribe(name: string, subscriber: DeleteSubscriber): () => void {
    let set = this.byName.get(name);
    if (!set) {
      set = new Set();
      this.byName.set(name, set);
    }
    set.add(subscriber);
    return () => {
      const current = this.byName.get(name);
      if (!current) return;
      current.delete(subscriber);
      if (current.size === 0) this.byName.delete(name);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const watcher = this.watcher;
    this.watcher = undefined;
    // Bounded: etcd3 can leave a cancel unanswered (a watch etcd refused never settles).
    const cancelled = watcher?.cancel() ?? Promise.resolve();
    await withTimeout(cancelled, CANCEL_TIMEOUT_MS, () => new Error('cancel')).catch(() => undefined);
  }

  private async create(fromRevision: bigint): Promise<void> {
    const watcher = this.rpc.client
      .watch()
      .prefix(this.kindPrefix)
      .startRevision(fromRevision.toString())
      .only('delete') // a server-side filter: puts are never sent to us
      .watcher();
    this.watcher = watcher;
    watcher.on('data', (res: IWatchResponse) => this.dispatch(res));
    watcher.on('error', (err) => void this.restart(watcher, err));
    await new Promise<void>((resolve) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', () => resolve());
    });
  }

  private dispatch(res: IWatchResponse): void {
    for (const event of res.events) {
      if (event.type !== 'Delete') continue;
      const key = event.kv.key.toString();
      const rest = key.slice(this.kindPrefix.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? rest : rest.slice(0, slash);
      const subscribers = this.byName.get(name);
      if (!subscribers) continue;
      const revision = BigInt(event.kv.mod_revision);
      for (const subscriber of [...subscribers]) subscriber.onDelete(key, revision);
    }
  }

  /**
   * etcd cancelled the watch (compaction, or a member lost its state): start over from now and resync. Told to
   * `onError` once per outage, however many tries it takes.
   */
  private async restart(old: Watcher, err: unknown, attempt = 0): Promise<void> {
    if (this.closed || this.watcher !== old) return;
    if (attempt === 0) this.onError(err);
    this.watcher = undefined;
    old.removeAllListeners();
    try {
      const res = await this.rpc.range({ key: Buffer.from(this.kindPrefix), count_only: true }, 'read the revision');
      if (this.closed) return;
      this.starting = this.create(BigInt(res.header.revision) + 1n);
      await this.starting;
    } catch (retryErr) {
      if (this.closed) return;
      // Try again shortly: waiters stay correct meanwhile (they only act on deletions they were told of).
      const delay = Math.min(RETRY_MIN_MS * 2 ** attempt, RETRY_MAX_MS);
      const timer = setTimeout(() => void this.restart(old, retryErr, attempt + 1), delay);
      timer.unref();
      this.watcher = old;
      return;
    }
    for (const set of [...this.byName.values()]) for (const subscriber of [...set]) subscriber.onResync();
  }
}
