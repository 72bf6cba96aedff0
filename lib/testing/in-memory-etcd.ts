import { type Clock, isClock } from '../clock/clock.js';
import { setImmediate } from 'node:timers';
import { ScopedEmitter } from './scoped-emitter.js';
import type {
  IDeleteRangeRequest,
  IDeleteRangeResponse,
  ILeaseGrantResponse,
  ILeaseKeepAliveRequest,
  ILeaseKeepAliveResponse,
  IRangeRequest,
  IRangeResponse,
  ITxnRequest,
  ITxnResponse,
} from 'etcd3';
import { InvalidArgumentError } from '../errors.js';
import { describe } from '../util/validation.js';
import { etcdError, later } from './etcd-rules.js';
import { MemoryStore } from './memory-store.js';
import { MemoryWatcher } from './memory-watch.js';
import type { LeaseTimeToLive, WatchRequest, WatchSink } from '../etcd/etcd-port.js';
import { isLeaseGone, translateError } from '../etcd/etcd-rpc.js';
import { prefixRangeEnd } from '../etcd/keys.js';

/** A key stored in an `InMemoryEtcd`, as tests see it. */
export interface StoredEntry {
  /** The full key, e.g. `lock/orders/694d7a3c5e1f0a04`. */
  readonly key: string;
  /** Its value, as text. */
  readonly value: string;
  /** The revision that created the key (a lock's fencing token). */
  readonly createRevision: bigint;
  /** The lease the key is attached to, in hex (`'0'` for none). */
  readonly leaseId: string;
}

/**
 * etcd in memory, for tests that run without an etcd server: it implements the library's port to etcd (ranges,
 * transactions, deletes, lease grants and revokes, the keepalive stream, watches), with etcd's semantics:
 * revisions, transactions, leases that expire after their TTL and take their keys with them, and watches. `EtcdLockTestingModule` creates one; share one between several test apps to test
 * replicas in one process. The library's own test suite runs the same requests against a real etcd and this one
 * and compares the answers.
 */
export class InMemoryEtcd {
  private readonly store: MemoryStore;
  /** False for a client made by `connect()`: closing it leaves the shared store running. */
  private readonly ownsStore: boolean;
  private readonly watchers = new Set<MemoryWatcher>();
  private readonly streams = new Set<MemoryKeepAliveStream>();
  private readonly link = { reachable: true };

  /** `clock`: what its leases expire on (default the system's; pass the `ManualClock` the test app uses). */
  constructor(options?: { readonly clock?: Clock }) {
    const clock = options?.clock;
    if (clock !== undefined && !isClock(clock)) {
      throw new InvalidArgumentError('options.clock', `must be a Clock (e.g. ManualClock), got ${describe(clock)}`);
    }
    this.store = storeForNextClient ?? new MemoryStore(clock);
    this.ownsStore = storeForNextClient === undefined;
    storeForNextClient = undefined;
  }

  /** The clock its leases expire on. */
  get clock(): Clock {
    return this.store.clock;
  }

  /**
   * Another client of this same etcd, with a connection of its own: give one to each replica of an app run in
   * one process, and `disconnect()` on it cuts off that replica alone (a partition, or a crash whose lease then
   * expires after its TTL). `close()` on it closes that client only.
   */
  connect(): InMemoryEtcd {
    storeForNextClient = this.store;
    return new InMemoryEtcd();
  }

  /** @internal What error messages name as the endpoint. */
  readonly endpoints = ['in-memory etcd'];
  /** @internal A watch costs nothing here: holders watch at once, so a test sees a loss as soon as it happens. */
  readonly freeWatches = true;

  /** @internal The port: a range. */
  range(req: IRangeRequest, what: string): Promise<IRangeResponse> {
    return this.call(what, () => this.store.range(req));
  }

  /** @internal The port: a transaction. */
  txn(req: ITxnRequest, what: string): Promise<ITxnResponse> {
    return this.call(what, () => this.store.txn(req));
  }

  /** @internal The port: a delete. */
  deleteRange(req: IDeleteRangeRequest, what: string): Promise<IDeleteRangeResponse> {
    return this.call(what, () => this.store.deleteRange(req));
  }

  /** @internal The port: grants lease `id` (`'0'`: etcd picks one). */
  leaseGrant(id: string, ttl: number): Promise<ILeaseGrantResponse> {
    return this.call('grant a session lease', () => {
      const granted = this.store.grant(BigInt(id), ttl);
      return { header: this.store.header(), ID: granted.toString(), TTL: ttl.toString(), error: '' };
    });
  }

  /** @internal The port: revokes a lease; one already gone counts as revoked. */
  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call('revoke the session lease', () => this.store.revoke(BigInt(id)));
    } catch (err) {
      if (!isLeaseGone(err)) throw err;
    }
  }

  /** @internal The port: a lease's remaining and granted TTL, or undefined when it is gone. */
  async leaseTimeToLive(id: string): Promise<LeaseTimeToLive | undefined> {
    return this.call('read a lease', () => this.store.timeToLive(BigInt(id)));
  }

  /** @internal The port: the keepalive stream. */
  keepAlive(): Promise<MemoryKeepAliveStream> {
    return this.call('keep the lease alive', () => {
      const stream = new MemoryKeepAliveStream(this.store, this.link, this.streams);
      this.streams.add(stream);
      return stream;
    });
  }

  /** @internal The port: a watch of the keys under a prefix. */
  watch({ prefix, exact = false, startRevision, onlyDeletes = false }: WatchRequest, sink: WatchSink): MemoryWatcher {
    const key = Buffer.from(prefix);
    const request = {
      key,
      rangeEnd: exact ? Buffer.alloc(0) : prefixRangeEnd(key),
      startRevision: startRevision === 0n ? undefined : startRevision,
      noPut: onlyDeletes,
      noDelete: false,
    };
    return new MemoryWatcher(this.store, this.link, this.watchers, request, sink);
  }

  /** @internal The store itself, for the testing controls (they act as etcd or other replicas, never unreachable). */
  get server(): MemoryStore {
    return this.store;
  }

  /** The store's current revision. */
  get revision(): bigint {
    return this.store.revision;
  }

  /** Every key stored now, in key order, optionally only those starting with `prefix`. */
  entries(prefix = ''): StoredEntry[] {
    return this.store
      .allKeys()
      .filter((kv) => kv.key.toString().startsWith(prefix))
      .map((kv) => ({
        key: kv.key.toString(),
        value: kv.value.toString(),
        createRevision: BigInt(kv.create_revision),
        leaseId: BigInt(kv.lease).toString(16),
      }));
  }

  /** Writes `key` = `value` with no lease, as another client would: seeds the data an app under test reads. */
  put(key: string, value: string): void {
    this.store.put({ key: Buffer.from(key), value: Buffer.from(value) });
  }

  /** The ids (hex) of the leases alive now. */
  leases(): string[] {
    return this.store.leaseIds().map((id) => id.toString(16));
  }

  /**
   * Makes a lease expire now, as if its holder stopped renewing it for its whole TTL: its keys are deleted in one
   * revision, and open keepalive streams break, so the client learns of it at its next keepalive (as from a
   * real etcd after a long partition) instead of up to a third of the TTL later.
   */
  expireLease(leaseIdHex: string): void {
    let id: bigint;
    try {
      id = BigInt(`0x${leaseIdHex}`);
    } catch {
      throw new InvalidArgumentError('leaseIdHex', `must be a lease id in hex, got '${leaseIdHex}'`);
    }
    if (!this.store.hasLease(id)) throw new InvalidArgumentError('leaseIdHex', `no lease ${leaseIdHex} is alive`);
    this.store.revoke(id);
    for (const stream of [...this.streams]) stream.break();
  }

  /**
   * Cuts this client off from etcd, as a network partition would: requests fail as unreachable, keepalive
   * streams break, watches report nothing; leases keep ageing, so a lease not renewed expires after its TTL.
   */
  disconnect(): void {
    this.link.reachable = false;
    for (const stream of [...this.streams]) stream.break();
    for (const watcher of this.watchers) watcher.linkChanged();
  }

  /** Ends a `disconnect()`: watches resume and report what they missed. */
  reconnect(): void {
    this.link.reachable = true;
    for (const watcher of this.watchers) watcher.linkChanged();
  }

  /** Stops this client's watches and keepalives; on the first client, also the lease timers (leases stop expiring). */
  close(): void {
    for (const watcher of [...this.watchers]) void watcher.cancel();
    for (const stream of [...this.streams]) stream.end();
    if (this.ownsStore) this.store.close();
  }

  /**
   * Answers after a turn of the event loop, as a socket would: a tight loop of requests in a test still lets
   * timers (keepalives, deadlines) run. `node:timers`' own setImmediate: jest's fake timers replace the global
   * one, and would hold every answer until the test advanced them. Unreachable fails fast, as a refused
   * connection does. Errors are etcd3's classes, translated to ours as the etcd3 port translates them.
   */
  private async call<T>(what: string, fn: () => T): Promise<T> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      if (!this.link.reachable) throw etcdError(14, 'UNAVAILABLE', 'InMemoryEtcd is disconnected (by the test)');
      return fn();
    } catch (err) {
      throw translateError(err, what, this.endpoints);
    }
  }
}

/** Set by `connect()` for the one constructor call that follows: the store a new client shares. */
let storeForNextClient: MemoryStore | undefined;

/** etcd3's keepalive duplex stream: write `{ ID }`, read `{ ID, TTL }` (`TTL` `'0'` once the lease is gone). */
export class MemoryKeepAliveStream extends ScopedEmitter {
  private open = true;

  constructor(
    private readonly store: MemoryStore,
    private readonly link: { readonly reachable: boolean },
    private readonly registry: Set<MemoryKeepAliveStream>,
  ) {
    super();
  }

  write(req: ILeaseKeepAliveRequest): boolean {
    if (!this.open) return false;
    later(() => {
      if (!this.open || !this.link.reachable) return;
      const id = BigInt(req.ID ?? 0);
      const res: ILeaseKeepAliveResponse = { header: this.store.header(), ID: id.toString(), TTL: this.store.keepAlive(id).toString() };
      this.emit('data', res);
    });
    return true;
  }

  end(): void {
    if (!this.close()) return;
    later(() => this.emit('end'));
  }

  /** @internal The connection broke. */
  break(): void {
    if (!this.close()) return;
    const err = etcdError(14, 'UNAVAILABLE', 'InMemoryEtcd keepalive stream broken');
    later(() => (this.listenerCount('error') > 0 ? this.emit('error', err) : this.emit('end')));
  }

  private close(): boolean {
    if (!this.open) return false;
    this.open = false;
    this.registry.delete(this);
    return true;
  }
}
