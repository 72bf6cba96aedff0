import { FilterType, type IDuplexStream, type IWatchRequest, type IWatchResponse } from 'etcd3';
import { Backoff } from '../util/backoff.js';
import type { PortWatcher, WatchRequest, WatchSink } from './etcd-port.js';
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
  /**
   * Watches not cancelled nor failed. Each is in one of three places: created on the current stream (`byId`), sent
   * and not yet answered (`pending`), or to send once a stream is open (`unsent`). No set of them all: with one
   * watch per held lock, a set entry each was 3% of what a held lock cost.
   */
  private live = 0;
  private readonly byId = new Map<number, StreamWatcher>();
  /** Creates sent on the current stream and not yet answered, oldest first (`head` is the next to answer). */
  private pending: StreamWatcher[] = [];
  private head = 0;
  /** Watches to create on the next stream (cancelled ones among them are skipped). */
  private unsent: StreamWatcher[] = [];
  private readonly backoff = new Backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS);
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly open: () => Promise<Stream>) {}

  watch(req: WatchRequest, sink: WatchSink): PortWatcher {
    const watcher = new StreamWatcher(this, req, sink);
    this.live += 1;
    if (this.stream) this.create(this.stream, watcher);
    else {
      this.unsent.push(watcher);
      this.connect();
    }
    return watcher;
  }

  /** Ends the stream for good (the client is being closed). */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.live = 0;
    this.drop();
    this.unsent = [];
  }

  /** @internal A live watcher was cancelled by its owner (it tells its sink nothing more already). */
  cancelled(watcher: StreamWatcher): void {
    if (this.closed) return; // every watch went with the stream
    this.live -= 1;
    if (watcher.id !== undefined) {
      this.byId.delete(watcher.id);
      this.stream?.write({ cancel_request: { watch_id: watcher.id } });
    }
    // A create still unanswered is cancelled when its answer comes (see `onCreated`); an unsent one is skipped.
    if (this.live === 0) this.drop();
  }

  private connect(): void {
    if (this.opening || this.closed || this.stream || this.live === 0) return;
    this.opening = true;
    this.open().then(
      (stream) => {
        this.opening = false;
        if (this.closed || this.live === 0) {
          stream.on('error', () => undefined);
          stream.cancel();
          return;
        }
        this.stream = stream;
        stream.on('data', (res) => this.onResponse(stream, res));
        stream.on('error', () => this.onBroken(stream));
        stream.on('end', () => this.onBroken(stream));
        const unsent = this.unsent;
        this.unsent = [];
        for (const watcher of unsent) if (watcher.isLive) this.create(stream, watcher);
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
    const id = Number(res.watch_id);
    const watcher = this.byId.get(id);
    if (!watcher) return; // cancelled by us; etcd confirms it
    if (res.canceled) {
      this.byId.delete(id);
      this.live -= 1;
      watcher.fail(cancelledError(res));
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
    if (!watcher.isLive) {
      // Cancelled while its create was on its way: etcd made it, so cancel it there too.
      if (!res.canceled) stream.write({ cancel_request: { watch_id: res.watch_id } });
      return;
    }
    if (res.canceled) {
      // Refused at creation: its history is compacted, or no permission.
      this.live -= 1;
      watcher.fail(cancelledError(res));
      return;
    }
    this.backoff.reset();
    // A number (etcd counts watches per stream from 0): a string per watch would cost a held lock 24 bytes more.
    watcher.id = Number(res.watch_id);
    this.byId.set(watcher.id, watcher);
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

  /** The stream is gone: every live watch on it is to be made again on the next one, in the order it was made. */
  private forgetStream(): void {
    this.stream = undefined;
    const again = [...this.byId.values(), ...this.pending.slice(this.head)];
    this.byId.clear();
    this.pending = [];
    this.head = 0;
    for (const watcher of again) {
      if (!watcher.isLive) continue;
      watcher.id = undefined;
      this.unsent.push(watcher);
    }
    if (this.live === 0) this.unsent = [];
  }
}

const EXACT = 1;
const ONLY_DELETES = 2;

/** A sink told nothing: a watch's once it is cancelled or failed. */
const ENDED: WatchSink = { event: () => undefined, error: () => undefined };

/**
 * One watch on a `WatchStream`, telling its sink directly: a few fields, no emitter and no listener list (with one
 * watch per held lock, those were a fifth of what a held lock cost).
 */
class StreamWatcher implements PortWatcher {
  /** etcd's id for it on the current stream, once created. */
  id: number | undefined;
  private readonly prefix: string;
  /** `exact` and `onlyDeletes`, as bits (`EXACT`, `ONLY_DELETES`): one field. */
  private readonly flags: number;
  /** The revision to start from if it is made again: just after the last event it was given. */
  private next: bigint;

  constructor(
    private readonly owner: WatchStream,
    req: WatchRequest,
    private sink: WatchSink,
  ) {
    this.prefix = req.prefix;
    this.flags = (req.exact ? EXACT : 0) | (req.onlyDeletes ? ONLY_DELETES : 0);
    this.next = req.startRevision;
  }

  createRequest(): IWatchRequest['create_request'] {
    const key = Buffer.from(this.prefix);
    return {
      key,
      range_end: this.flags & EXACT ? undefined : prefixRangeEnd(key),
      start_revision: this.next.toString(),
      filters: this.flags & ONLY_DELETES ? [FilterType.Noput] : [],
    };
  }

  /** etcd made the watch: one asked for "from now" (start 0) is from just after the store's revision then on. */
  created(res: IWatchResponse): void {
    if (this.next === 0n) this.next = BigInt(res.header.revision) + 1n;
    this.sink.connected?.(res);
  }

  deliver(res: IWatchResponse): void {
    const events = res.events;
    if (events.length === 0) return;
    const last = BigInt(events[events.length - 1].kv.mod_revision) + 1n;
    if (last > this.next) this.next = last;
    // The sink may cancel the watch on an event: the rest of the response is not told.
    for (const event of events) this.sink.event(event.type === 'Delete' ? 'delete' : 'put', event.kv);
  }

  /** etcd cancelled it: told once, and nothing after. */
  fail(err: WatchCancelledError): void {
    const sink = this.sink;
    this.sink = ENDED;
    sink.error(err);
  }

  /** Not cancelled, nor failed. */
  get isLive(): boolean {
    return this.sink !== ENDED;
  }

  cancel(): Promise<void> {
    if (this.sink !== ENDED) {
      this.sink = ENDED;
      this.owner.cancelled(this);
    }
    return Promise.resolve();
  }
}

function cancelledError(res: IWatchResponse): WatchCancelledError {
  const compacted = res.compact_revision && res.compact_revision !== '0' ? BigInt(res.compact_revision) : undefined;
  return new WatchCancelledError(res.cancel_reason || (compacted ? `revisions before ${compacted} are compacted` : 'cancelled'), compacted);
}
