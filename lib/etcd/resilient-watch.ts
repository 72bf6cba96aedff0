import type { IKeyValue } from 'etcd3';
import { Backoff } from '../util/backoff.js';
import type { EtcdPort, PortWatcher, WatchRequest } from './etcd-port.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

/** What a resilient watch asks of its owner. */
export interface WatchHandlers {
  /**
   * Reads the state the owner keeps (or just the store's revision) and returns the revision it read at: the watch
   * goes on from the next one. Called before the first watch unless a start revision is given, and after every
   * restart (etcd cancelled the watch: events may have been missed). A read that throws is tried again, backing off.
   */
  read(): Promise<bigint>;
  /** Each event, in order. */
  onEvent(type: 'put' | 'delete', kv: IKeyValue): void;
}

/**
 * A watch that outlives etcd cancelling it (a compaction of the history it replays): read, watch from the read's
 * revision + 1 (so no change between the read and the watch is missed), and when etcd cancels the watch, read again
 * and watch again. The one restart mechanism of every watch that keeps state (holders, a group's changes, keys in
 * doubt).
 */
export class ResilientWatch {
  private watcher: PortWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly backoff = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);

  constructor(
    private readonly rpc: EtcdPort,
    private readonly request: Omit<WatchRequest, 'startRevision'>,
    private readonly handlers: WatchHandlers,
  ) {}

  /** Starts: from `fromRevision` if given (the owner has just read), else with a read. */
  start(fromRevision?: bigint): this {
    if (fromRevision === undefined) void this.restart();
    else this.watchFrom(fromRevision);
    return this;
  }

  /** Stops; no handler is called after it. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const watcher = this.watcher;
    this.watcher = undefined;
    watcher?.removeAllListeners();
    watcher?.on('error', () => undefined);
    await watcher?.cancel().catch(() => undefined);
  }

  private watchFrom(revision: bigint): void {
    if (this.closed) return;
    const watcher = this.rpc.watch({ ...this.request, startRevision: revision });
    this.watcher = watcher;
    watcher.on('put', (kv) => this.handlers.onEvent('put', kv));
    watcher.on('delete', (kv) => this.handlers.onEvent('delete', kv));
    watcher.on('error', () => {
      if (this.watcher !== watcher) return;
      // etcd already cancelled it. Cancelling again would make etcd answer for a watch id that etcd3 has dropped,
      // which etcd3 throws on, uncaught: just forget it and start over.
      this.watcher = undefined;
      watcher.removeAllListeners();
      void this.restart();
    });
  }

  private async restart(): Promise<void> {
    if (this.closed) return;
    try {
      const revision = await this.handlers.read();
      this.backoff.reset();
      this.watchFrom(revision + 1n);
    } catch {
      if (this.closed) return;
      this.timer = setTimeout(() => void this.restart(), this.backoff.next());
      this.timer.unref();
    }
  }
}
