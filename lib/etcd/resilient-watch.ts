import type { IKeyValue } from 'etcd3';
import { Backoff } from '../util/backoff.js';
import { pause } from '../util/wait-signal.js';
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
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.cancel().catch(() => undefined);
  }

  private watchFrom(revision: bigint): void {
    if (this.closed) return;
    const watcher = this.rpc.watch(
      { ...this.request, startRevision: revision },
      {
        event: (type, kv) => this.handlers.onEvent(type, kv),
        error: () => {
          if (this.watcher !== watcher) return;
          // etcd already cancelled it (and tells it nothing more): forget it and start over.
          this.watcher = undefined;
          void this.restart();
        },
      },
    );
    this.watcher = watcher;
  }

  private async restart(): Promise<void> {
    await rewatch(
      () => this.handlers.read(),
      () => !this.closed,
      (from) => this.watchFrom(from),
      this.backoff,
    );
    this.backoff.reset();
  }
}

/**
 * The restart step of every watch: `read()` (retried with `backoff` while `live()`), then `resume(revision + 1)`,
 * so that no change between the read and the new watch is missed. Never rejects.
 */
export async function rewatch(
  read: () => Promise<bigint>,
  live: () => boolean,
  resume: (fromRevision: bigint) => void,
  backoff: Backoff,
): Promise<void> {
  while (live()) {
    try {
      const revision = await read();
      if (live()) resume(revision + 1n);
      return;
    } catch {
      if (!live()) return;
      await pause(backoff.next());
    }
  }
}

/** The store's revision now (one count-only read under `prefix`). */
export async function readRevision(rpc: EtcdPort, prefix: string): Promise<bigint> {
  const res = await rpc.range({ key: Buffer.from(prefix), count_only: true }, `read the revision of '${prefix}'`);
  return BigInt(res.header.revision);
}

/**
 * Calls `onChange` after any change under `prefix`, and after a restart (etcd cancelled the watch, e.g. on
 * compaction: changes may have been missed). The caller re-reads; events carry no state here.
 */
export function changeWatch(rpc: EtcdPort, prefix: string, onChange: () => void): ResilientWatch {
  return new ResilientWatch(
    rpc,
    { prefix },
    {
      read: async () => {
        const revision = await readRevision(rpc, prefix);
        onChange();
        return revision;
      },
      onEvent: () => onChange(),
    },
  );
}
