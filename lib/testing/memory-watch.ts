import { ScopedEmitter } from './scoped-emitter.js';
import type { IKeyValue, IWatchResponse } from 'etcd3';
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

/**
 * etcd3's `Watcher`: emits `connected` once created, then `data` with each revision's matching events (and `put`
 * / `delete` per event), replaying from `startRevision` first; `disconnected` while etcd is unreachable, then
 * `connected` again and what it missed; `error` if the history it asks for is gone; `end` once cancelled.
 */
export class MemoryWatcher extends ScopedEmitter {
  readonly id = String(nextWatchId++);
  private next: bigint | undefined;
  private connected = false;
  private cancelled = false;
  private readonly unsubscribe: () => void;
  private flushing = false;
  private readonly inRange: (key: Buffer) => boolean;

  constructor(
    private readonly store: MemoryStore,
    private readonly link: Reachability,
    private readonly registry: Set<MemoryWatcher>,
    private readonly request: MemoryWatchRequest,
  ) {
    super();
    this.next = request.startRevision;
    this.inRange = keyRange(request.key, request.rangeEnd);
    registry.add(this);
    this.on('data', (res: IWatchResponse) => {
      for (const event of res.events) this.emit(event.type.toLowerCase(), event.kv, event.prev_kv);
    });
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
      this.unsubscribe();
      this.registry.delete(this);
      later(() => this.emit('end'));
    }
    return Promise.resolve();
  }

  /** @internal The link went down or came back. */
  linkChanged(): void {
    if (this.cancelled) return;
    if (!this.link.reachable && this.connected) {
      this.connected = false;
      this.emit('disconnected', etcdError(14, 'UNAVAILABLE', 'InMemoryEtcd is disconnected'));
    }
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
      this.emit('connected', this.response([], revision, true));
    }
    const changes = this.store.changesSince(this.next as bigint);
    if (!changes) {
      this.cancel();
      const err = etcdError(11, 'OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted');
      if (this.listenerCount('error') > 0) this.emit('error', err);
      return;
    }
    for (const change of changes) {
      if (this.cancelled) return;
      this.next = change.revision + 1n;
      const events = change.events.filter((e) => this.matches(e));
      if (events.length > 0) this.emit('data', this.response(events, change.revision, false));
    }
  }

  private matches(event: StoreEvent): boolean {
    if (event.type === 'Put' ? this.request.noPut : this.request.noDelete) return false;
    return this.inRange(event.kv.key);
  }

  private response(events: StoreEvent[], revision: bigint, created: boolean): IWatchResponse {
    return {
      header: this.store.header(revision),
      watch_id: this.id,
      created,
      canceled: false,
      compact_revision: '0',
      cancel_reason: '',
      events: events.map((e) => ({ type: e.type, kv: copy(e.kv), prev_kv: null as unknown as IKeyValue })),
    } as unknown as IWatchResponse;
  }
}

function copy(kv: IKeyValue): IKeyValue {
  return { ...kv, key: Buffer.from(kv.key), value: Buffer.from(kv.value) };
}
