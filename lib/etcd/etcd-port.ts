import type {
  IDeleteRangeRequest,
  IDeleteRangeResponse,
  IKeyValue,
  ILeaseGrantResponse,
  ILeaseKeepAliveResponse,
  IRangeRequest,
  IRangeResponse,
  ITxnRequest,
  ITxnResponse,
  IWatchResponse,
} from 'etcd3';

/** What a watch asks for: the keys under `prefix` (or that key alone, `exact`), from `startRevision` on, optionally deletions only. */
export interface WatchRequest {
  readonly prefix: string;
  readonly exact?: boolean;
  /** The first revision to report; `0n` for "from now" (the `connected` answer's header says which that was). */
  readonly startRevision: bigint;
  readonly onlyDeletes?: boolean;
}

/**
 * Told of one watch's life, in order: `connected` once etcd created it, then each event, and `error` at most once,
 * when etcd cancelled the watch (a compaction of the history it replays, or a refusal): nothing comes after it.
 * An object rather than listeners: a held lock watches its key, and 100,000 held locks are 100,000 watches.
 */
export interface WatchSink {
  /** With etcd's answer to the create: its header's revision is the store's then. */
  connected?(res: IWatchResponse): void;
  event(type: 'put' | 'delete', kv: IKeyValue): void;
  error(err: unknown): void;
}

/** One watch. After `cancel()` its sink is told nothing more. */
export interface PortWatcher {
  cancel(): Promise<void>;
}

/** The keepalive stream of leases: write `{ ID }`, read `{ ID, TTL }` (`TTL` `'0'` once the lease is gone). */
export interface KeepAliveStream {
  write(req: { ID: string }): unknown;
  on(event: 'data', listener: (res: ILeaseKeepAliveResponse) => void): this;
  on(event: 'error' | 'end', listener: (err?: unknown) => void): this;
  end(): void;
}

/** What etcd says of a lease: seconds left, and the TTL it was granted with. */
export interface LeaseTimeToLive {
  readonly ttl: number;
  readonly grantedTtl: number;
}

/**
 * The port to etcd: every request the library makes, watches and keepalives included, goes through it. Unary
 * calls have deadlines and throw our typed errors. Implemented over etcd3 (`EtcdRpc`) and in memory
 * (`InMemoryEtcd`, for tests); no `@nestjs` import on either side.
 */
export interface EtcdPort {
  /** The endpoints, as errors name them. */
  readonly endpoints: readonly string[];
  /** True when a watch costs no message (the in-memory etcd): holders then watch their names at once. */
  readonly freeWatches?: boolean;
  range(req: IRangeRequest, what: string): Promise<IRangeResponse>;
  txn(req: ITxnRequest, what: string, timeoutMs?: number): Promise<ITxnResponse>;
  deleteRange(req: IDeleteRangeRequest, what: string): Promise<IDeleteRangeResponse>;
  leaseGrant(id: string, ttl: number, timeoutMs: number): Promise<ILeaseGrantResponse>;
  /** Revokes a lease; a lease that is already gone counts as revoked. */
  leaseRevoke(id: string): Promise<void>;
  /** A lease's remaining and granted TTL in seconds; `undefined` when it is gone. */
  leaseTimeToLive(id: string): Promise<LeaseTimeToLive | undefined>;
  keepAlive(): Promise<KeepAliveStream>;
  watch(req: WatchRequest, sink: WatchSink): PortWatcher;
  /** Closes the client (only the one the library created). */
  close(): void;
}
