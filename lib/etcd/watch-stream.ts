import { FilterType, type IDuplexStream, type IWatchRequest, type IWatchResponse } from 'etcd3';
import { Backoff } from '../util/backoff.js';
import type { PortWatcher, WatchRequest } from './etcd-port.js';
import { prefixRangeEnd } from './keys.js';

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 1000;

/** etcd cancelled a watch (its history was compacted, or it refused it): the watcher's `error`. */
export class WatchCancelledError extends Error {
  constructor(
    reason: string,
    /** Set when the revisions the watch asked for were compacted: the oldest one etcd still has. */
    readonly compactRevision: bigint | undefined,
  ) {
    super(`etcd cancelled the watch: ${reason}`);
    this.name = 'WatchCancelledError';
  }
}

type Stream = IDuplexStream<IWatchRequest, IWatchResponse>;

/**
 * Every watch of a client on one etcd Watch stream. Creates are sent at once, not one round trip after another
 * (etcd answers them in the order sent), and a watch is a few fields: 10,000 names cost 10,000 small objects,
 * not a queue copied at each create. When the stream breaks, each live watch is made again from the revision
 * after the last event it was given, so nothing is missed or told twice; a watch whose history is gone by then
 * gets `error` (and its owner re-reads etcd).
 */
export class WatchStream {
  private stream: Stream | undefined;
  private opening = false;
  private closed = false;
  private readonly live = new Set<StreamWatcher>();
  private readonly byId = new Map<string, StreamWatcher>();
  /** Creates sent on the current stream and not yet answered, oldest first (`head` is the next to answer). */
  private pending: StreamWatcher[] = [];
  private head = 0;
  private readonly backoff = new Backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS);
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly open: () => Promise<Stream>) {}

  watch(req: WatchRequest): PortWatcher {
    const watcher = new StreamWatcher(this, req);
    this.live.add(watcher);
    if (this.stream) this.create(this.stream, watcher);
    else this.connect();
    return watcher;
  }

  /** Ends the stream for good (the client is being closed). */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.live.clear();
    this.drop();
  }

  /** @internal */
  cancel(watcher: StreamWatcher): void {
    if (!this.live.delete(watcher)) return;
    if (watcher.id !== undefined) {
      this.byId.delete(watcher.id);
      this.stream?.write({ cancel_request: { watch_id: watcher.id } });
    }
    // A create still unanswered is cancelled when its answer comes (see `onCreated`).
    if (this.live.size === 0) this.drop();
  }

  private connect(): void {
    if (this.opening || this.closed || this.stream || this.live.size === 0) return;
    this.opening = true;
    this.open().then(
      (stream) => {
        this.opening = false;
        if (this.closed || this.live.size === 0) {
          stream.on('error', () => undefined);
          stream.cancel();
          return;
        }
        this.stream = stream;
        stream.on('data', (res) => this.onResponse(stream, res));
        stream.on('error', () => this.onBroken(stream));
        stream.on('end', () => this.onBroken(stream));
        for (const watcher of this.live) this.create(stream, watcher);
      },
      () => {
        this.opening = false;
        this.reconnectLater();
      },
    );
  }

  private create(stream: Stream, watcher: StreamWatcher): void {
    this.pending.push(watcher);
    stream.write({ create_request: watcher.createRequest() });
  }

  private onResponse(stream: Stream, res: IWatchResponse): void {
    if (stream !== this.stream) return;
    if (res.created) {
      this.onCreated(stream, res);
      return;
    }
    const watcher = this.byId.get(res.watch_id);
    if (!watcher) return; // cancelled by us; etcd confirms it
    if (res.canceled) {
      this.byId.delete(res.watch_id);
      this.live.delete(watcher);
      watcher.emit('error', cancelledError(res));
      return;
    }
    watcher.deliver(res);
  }

  private onCreated(stream: Stream, res: IWatchResponse): void {
    const watcher = this.pending[this.head++];
    if (this.head === this.pending.length) {
      this.pending = [];
      this.head = 0;
    }
    if (!watcher) return;
    if (res.canceled) {
      // Refused at creation: its history is compacted, or no permission.
      if (this.live.delete(watcher)) watcher.emit('error', cancelledError(res));
      return;
    }
    if (!this.live.has(watcher)) {
      stream.write({ cancel_request: { watch_id: res.watch_id } });
      return;
    }
    this.backoff.reset();
    watcher.id = res.watch_id;
    this.byId.set(res.watch_id, watcher);
    watcher.created(res);
  }

  private onBroken(stream: Stream): void {
    if (stream !== this.stream) return;
    this.forgetStream();
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, this.backoff.next());
    this.retryTimer.unref();
  }

  /** Ends the current stream (no watch left, or closing). */
  private drop(): void {
    const stream = this.stream;
    this.forgetStream();
    if (!stream) return;
    stream.on('error', () => undefined);
    stream.cancel();
  }

  private forgetStream(): void {
    this.stream = undefined;
    this.pending = [];
    this.head = 0;
    this.byId.clear();
    for (const watcher of this.live) watcher.id = undefined;
  }
}

/** One watch on a `WatchStream`: etcd3's `Watcher` events (`connected`, `data`, `put`, `delete`, `error`). */
// biome-ignore lint/suspicious/noExplicitAny: listeners of several event signatures (see `PortWatcher`)
type Listener = (...args: any[]) => void;

class StreamWatcher implements PortWatcher {
  /** etcd's id for it on the current stream, once created. */
  id: string | undefined;
  /** The revision to start from if it is made again: just after the last event it was given. */
  private next: bigint;
  /**
   * Its listeners, in the order added. Not an EventEmitter: with one watch per held lock, an emitter's own state
   * (about 200 bytes once three events have listeners) was a tenth of what a held lock costs. An 'error' with no
   * listener is dropped, never thrown.
   */
  private listeners: Array<{ event: string; fn: Listener; once: boolean }> = [];

  constructor(
    private readonly owner: WatchStream,
    private readonly req: WatchRequest,
  ) {
    this.next = req.startRevision;
  }

  on(event: string, fn: Listener): this {
    // A new array of the exact size: one grown by push keeps room for 16 more (150 bytes per watch).
    this.listeners = [...this.listeners, { event, fn, once: false }];
    return this;
  }

  once(event: string, fn: Listener): this {
    this.listeners = [...this.listeners, { event, fn, once: true }];
    return this;
  }

  removeAllListeners(): this {
    this.listeners = [];
    return this;
  }

  /**
   * Calls the listeners of `event` (those added meanwhile wait for the next one); a `once` listener is removed
   * first.
   */
  emit(event: string, ...args: unknown[]): void {
    const called = this.listeners.filter((l) => l.event === event);
    if (called.some((l) => l.once)) this.listeners = this.listeners.filter((l) => !(l.once && l.event === event));
    // As an EventEmitter does, with the watcher as `this` (shared listeners find their watch by it).
    for (const l of called) l.fn.apply(this, args);
  }

  createRequest(): IWatchRequest['create_request'] {
    const key = Buffer.from(this.req.prefix);
    return {
      key,
      range_end: this.req.exact ? undefined : prefixRangeEnd(key),
      start_revision: this.next.toString(),
      filters: this.req.onlyDeletes ? [FilterType.Noput] : [],
    };
  }

  /** etcd made the watch: one asked for "from now" (start 0) is from just after the store's revision then on. */
  created(res: IWatchResponse): void {
    if (this.next === 0n) this.next = BigInt(res.header.revision) + 1n;
    this.emit('connected', res);
  }

  deliver(res: IWatchResponse): void {
    const events = res.events;
    if (events.length === 0) return;
    const last = BigInt(events[events.length - 1].kv.mod_revision) + 1n;
    if (last > this.next) this.next = last;
    this.emit('data', res);
    for (const event of events) this.emit(event.type === 'Delete' ? 'delete' : 'put', event.kv, event.prev_kv);
  }

  cancel(): Promise<void> {
    this.owner.cancel(this);
    return Promise.resolve();
  }
}

function cancelledError(res: IWatchResponse): WatchCancelledError {
  const compacted = res.compact_revision && res.compact_revision !== '0' ? BigInt(res.compact_revision) : undefined;
  return new WatchCancelledError(res.cancel_reason || (compacted ? `revisions before ${compacted} are compacted` : 'cancelled'), compacted);
}
