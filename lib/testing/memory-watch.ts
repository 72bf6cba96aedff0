import { ScopedEmitter } from './scoped-emitter.js';
import type { IKeyValue, IWatchResponse } from 'etcd3';
import { prefixRangeEnd } from '../etcd/keys.js';
import { etcdError, keyRange, later, toBuffer } from './etcd-rules.js';
import type { MemoryStore, StoreEvent } from './memory-store.js';

/** What a watch asks for, as etcd's WatchCreateRequest. */
interface WatchRequest {
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

/** etcd3's `client.watch()` builder, for the calls the library makes: `key`/`prefix`, `startRevision`, `only`. */
export class MemoryWatchBuilder {
  private readonly request: WatchRequest = {
    key: Buffer.alloc(0),
    rangeEnd: Buffer.alloc(0),
    startRevision: undefined,
    noPut: false,
    noDelete: false,
  };

  constructor(
    private readonly store: MemoryStore,
    private readonly link: Reachability,
    private readonly registry: Set<MemoryWatcher>,
  ) {}

  key(key: string | Buffer): this {
    this.request.key = Buffer.from(toBuffer(key));
    return this;
  }

  prefix(prefix: string | Buffer): this {
    this.request.key = Buffer.from(toBuffer(prefix));
    this.request.rangeEnd = prefixRangeEnd(this.request.key);
    return this;
  }

  startRevision(revision: string): this {
    this.request.startRevision = BigInt(revision);
    return this;
  }

  only(operation: 'put' | 'delete'): this {
    this.request.noPut = operation === 'delete';
    this.request.noDelete = operation === 'put';
    return this;
  }

  watcher(): MemoryWatcher {
    return new MemoryWatcher(this.store, this.link, this.registry, { ...this.request });
  }

  /** Resolves once the watch is connected, as etcd3's `create()`. */
  create(): Promise<MemoryWatcher> {
    const watcher = this.watcher();
    return new Promise((resolve, reject) => {
      watcher.once('connected', () => resolve(watcher));
      watcher.once('error', reject);
    });
  }
}

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
    private readonly request: WatchRequest,
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
