import { AsyncResource } from 'node:async_hooks';
import type { IKeyValue, IWatchResponse } from 'etcd3';
import type { PortWatcher, WatchSink } from '../etcd/etcd-port.js';
import { etcdError, keyRange, later } from './etcd-rules.js';
import type { MemoryStore, StoreEvent } from './memory-store.js';

/** What a watch asks for, as etcd's WatchCreateRequest. */
export interface MemoryWatchRequest {
  key: Buffer;
  rangeEnd: Buffer;
  startRevision: bigint | undefined;
  noPut: boolean;
  noDelete: boolean;
}

/** Whether the client can reach the in-memory etcd now; watchers hold their events while it cannot. */
export interface Reachability {
  readonly reachable: boolean;
}

let nextWatchId = 0;

/** A sink told nothing: a watch's once it is cancelled. */
const ENDED: WatchSink = { event: () => undefined, error: () => undefined };

/**
 * A watch, as the port's: tells its sink `connected` once created, then each matching event, replaying from
 * `startRevision` first; while etcd is unreachable it holds them, and tells what it missed once it is back; `error`
 * if the history it asks for is gone. Its sink runs in the async context of the code that made the watch, as a
 * real client's stream events do (they come from its own socket): otherwise an event would run in the context of
 * whichever client made the write, and AsyncLocalStorage-based logging or tracing of several apps in one process
 * would credit the wrong app.
 */
export class MemoryWatcher implements PortWatcher {
  readonly id = String(nextWatchId++);
  private next: bigint | undefined;
  private connected = false;
  private cancelled = false;
  private readonly unsubscribe: () => void;
  private flushing = false;
  private readonly inRange: (key: Buffer) => boolean;
  private readonly scope = new AsyncResource('InMemoryEtcd');

  constructor(
    private readonly store: MemoryStore,
    private readonly link: Reachability,
    private readonly registry: Set<MemoryWatcher>,
    private readonly request: MemoryWatchRequest,
    private sink: WatchSink,
  ) {
    this.next = request.startRevision;
    this.inRange = keyRange(request.key, request.rangeEnd);
    registry.add(this);
    // Told of every write, but reads the store itself when it delivers: one code path for live and replayed.
    this.unsubscribe = store.onChange(() => this.schedule());
    this.schedule();
  }

  /** The revision this watcher will report from next. */
  lastRevision(): string | null {
    return this.next === undefined ? null : this.next.toString();
  }

  cancel(): Promise<void> {
    if (!this.cancelled) {
      this.cancelled = true;
      this.sink = ENDED;
      this.unsubscribe();
      this.registry.delete(this);
    }
    return Promise.resolve();
  }

  /** @internal The link went down or came back: once back, the watch is made again and tells what it missed. */
  linkChanged(): void {
    if (this.cancelled) return;
    if (!this.link.reachable && this.connected) this.connected = false;
    this.schedule();
  }

  /** Delivers on a later microtask, as a network would: never inside the request that made the change. */
  private schedule(): void {
    if (this.flushing || this.cancelled) return;
    this.flushing = true;
    later(() => {
      this.flushing = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.cancelled || !this.link.reachable) return;
    const revision = this.store.revision;
    if (!this.connected) {
      this.connected = true;
      this.next ??= revision + 1n;
      const created = this.response(revision);
      this.tell((sink) => sink.connected?.(created));
    }
    const changes = this.store.changesSince(this.next as bigint);
    if (!changes) {
      const sink = this.sink;
      this.cancel();
      const err = etcdError(11, 'OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted');
      this.scope.runInAsyncScope(() => sink.error(err));
      return;
    }
    for (const change of changes) {
      if (this.cancelled) return;
      this.next = change.revision + 1n;
      for (const event of change.events) {
        if (this.matches(event)) this.tell((sink) => sink.event(event.type === 'Put' ? 'put' : 'delete', copy(event.kv)));
      }
    }
  }

  /** Tells the sink in force now (none once cancelled), in the watch's own async context. */
  private tell(fn: (sink: WatchSink) => void): void {
    this.scope.runInAsyncScope(() => fn(this.sink));
  }

  private matches(event: StoreEvent): boolean {
    if (event.type === 'Put' ? this.request.noPut : this.request.noDelete) return false;
    return this.inRange(event.kv.key);
  }

  /** etcd's answer to the create. */
  private response(revision: bigint): IWatchResponse {
    return {
      header: this.store.header(revision),
      watch_id: this.id,
      created: true,
      canceled: false,
      compact_revision: '0',
      cancel_reason: '',
      events: [],
    } as unknown as IWatchResponse;
  }
}

function copy(kv: IKeyValue): IKeyValue {
  return { ...kv, key: Buffer.from(kv.key), value: Buffer.from(kv.value) };
}
