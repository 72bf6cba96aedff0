import { type Clock, type ClockTimer, systemClock } from '../clock/clock.js';
import type {
  IDeleteRangeRequest,
  IDeleteRangeResponse,
  IKeyValue,
  IPutRequest,
  IPutResponse,
  IRangeRequest,
  IRangeResponse,
  IResponseHeader,
  ITxnRequest,
  ITxnResponse,
} from 'etcd3';
import { CompareResult, CompareTarget, SortOrder, SortTarget } from '../etcd/requests.js';
import {
  type Compare,
  checkDuplicates,
  compareField,
  enumValue,
  etcdError,
  keyRange,
  type Numeric,
  num,
  type Op,
  sortKeys,
  type StoredKey,
  toBuffer,
  toKeyValue,
  within,
} from './etcd-rules.js';

interface StoredLease {
  readonly ttl: number;
  readonly keys: Set<string>;
  timer: ClockTimer | undefined;
  /** When it expires (the clock's monotonic time), unless renewed. */
  expiresAt: number;
}

/** One change, as a watch reports it. */
export interface StoreEvent {
  readonly type: 'Put' | 'Delete';
  readonly kv: IKeyValue;
}

/** Changes kept for watches that start in the past (etcd would keep them until compaction). */
const HISTORY_REVISIONS = 10_000;
/** Node timers cannot wait longer than this; a lease with a longer TTL never expires by itself. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * etcd's key-value store and lessor, in memory, for the requests the library makes: MVCC revisions (one per
 * write request, shared by all writes of a transaction, which reads its own writes), create/mod revisions and
 * versions, range options (sort, limit, keys/count only, revision filters), transactions with range compares,
 * leases that expire after their TTL and delete their keys in one revision, and a change history for watches.
 * Errors are etcd3's own classes, built from etcd's own messages.
 */
export class MemoryStore {
  private rev = 1n;
  private readonly keys = new Map<string, StoredKey>();
  private readonly leases = new Map<bigint, StoredLease>();
  private readonly history: Array<{ revision: bigint; events: StoreEvent[] }> = [];
  /**
   * Where the kept history starts in `history`: entries before it are compacted, and dropped in one splice once
   * there are `HISTORY_REVISIONS` of them (a shift per write moved 10,000 entries each time once the history was full).
   */
  private historyStart = 0;
  /** The newest revision whose changes are no longer kept. */
  private compacted = 0n;
  private readonly listeners = new Set<(revision: bigint, events: StoreEvent[]) => void>();
  /** Changes of the write under way; published once it ends. */
  private pending: StoreEvent[] = [];

  /** Leases expire on `clock`: a `ManualClock` moves them by hand. */
  constructor(readonly clock: Clock = systemClock) {}

  get revision(): bigint {
    return this.rev;
  }

  header(revision = this.rev): IResponseHeader {
    return { cluster_id: '1', member_id: '1', revision: revision.toString(), raft_term: '1' };
  }

  range(req: IRangeRequest): IRangeResponse {
    const at = BigInt(num(req.revision));
    if (at !== 0n && at !== this.rev) {
      throw new Error('InMemoryEtcd does not keep old revisions: a range with `revision` is not supported');
    }
    const inRange = this.select(req.key, req.range_end);
    let kvs = inRange.filter(
      (k) =>
        within(k.create, req.min_create_revision, req.max_create_revision) && within(k.mod, req.min_mod_revision, req.max_mod_revision),
    );
    const target = enumValue(SortTarget, req.sort_target, SortTarget.Key);
    let order = enumValue(SortOrder, req.sort_order, SortOrder.None);
    if (order === SortOrder.None && target !== SortTarget.Key) order = SortOrder.Ascend;
    if (order !== SortOrder.None) kvs = sortKeys(kvs, target, order === SortOrder.Descend);
    const limit = Number(num(req.limit));
    const more = limit > 0 && kvs.length > limit;
    if (limit > 0) kvs = kvs.slice(0, limit);
    return {
      header: this.header(),
      kvs: req.count_only ? [] : kvs.map((k) => toKeyValue(k, !!req.keys_only)),
      more,
      count: inRange.length.toString(),
    };
  }

  put(req: IPutRequest): IPutResponse {
    return this.write(() => this.applyPut(req, this.rev + 1n));
  }

  deleteRange(req: IDeleteRangeRequest): IDeleteRangeResponse {
    return this.write(() => this.applyDelete(req, this.rev + 1n));
  }

  txn(req: ITxnRequest): ITxnResponse {
    for (const branch of [req.success, req.failure]) checkDuplicates((branch ?? []) as Op[]);
    const succeeded = (req.compare ?? []).every((c) => this.compare(c as unknown as Compare));
    const ops = ((succeeded ? req.success : req.failure) ?? []) as Op[];
    for (const op of ops) if (op.request_put) this.checkLease(op.request_put.lease);
    const answers: Array<[string, object]> = [];
    const res = this.write(() => {
      const next = this.rev + 1n;
      for (const op of ops) answers.push(this.applyOp(op, next));
      return { succeeded } as ITxnResponse;
    });
    // As etcd: the inner answers carry the transaction's final revision and no cluster ids.
    const header = { cluster_id: '0', member_id: '0', revision: res.header.revision, raft_term: '0' };
    res.responses = answers.map(([name, body]) => ({
      response: name,
      [name]: { ...body, header },
    })) as unknown as ITxnResponse['responses'];
    return res;
  }

  /** Grants a lease; `id` 0 picks one. */
  grant(id: bigint, ttl: number): bigint {
    if (id === 0n) id = randomId(this.leases);
    if (this.leases.has(id)) throw etcdError(9, 'FAILED_PRECONDITION', 'etcdserver: lease already exists');
    const lease: StoredLease = { ttl, keys: new Set(), timer: undefined, expiresAt: Number.POSITIVE_INFINITY };
    this.leases.set(id, lease);
    this.arm(id, lease);
    return id;
  }

  /** Renews a lease; returns its TTL, or 0 when the lease is gone (as etcd's keepalive answers). */
  keepAlive(id: bigint): number {
    const lease = this.leases.get(id);
    if (!lease) return 0;
    this.arm(id, lease);
    return lease.ttl;
  }

  /** Revokes a lease (or expires it): its keys are deleted in one revision. */
  revoke(id: bigint): void {
    const lease = this.leases.get(id);
    if (!lease) throw etcdError(5, 'NOT_FOUND', 'etcdserver: requested lease not found');
    lease.timer?.cancel();
    this.leases.delete(id);
    if (lease.keys.size === 0) return;
    // etcd deletes them in key order (its lessor sorts them, so every member applies the same events).
    const keys = [...lease.keys].map((key) => this.keys.get(key) as StoredKey).sort((x, y) => Buffer.compare(x.key, y.key));
    this.write(() => {
      for (const key of keys) this.remove(key, this.rev + 1n);
    });
  }

  /** A lease's remaining and granted TTL in whole seconds (as etcd rounds them), or undefined when it is gone. */
  timeToLive(id: bigint): { ttl: number; grantedTtl: number } | undefined {
    const lease = this.leases.get(id);
    if (!lease) return undefined;
    const left = Math.max(0, Math.ceil((lease.expiresAt - this.clock.monotonic()) / 1000));
    return { ttl: Number.isFinite(left) ? left : lease.ttl, grantedTtl: lease.ttl };
  }

  hasLease(id: bigint): boolean {
    return this.leases.has(id);
  }

  leaseIds(): bigint[] {
    return [...this.leases.keys()];
  }

  /** Every key, in key order (for tests that check the store is clean). */
  allKeys(): IKeyValue[] {
    return this.select(Buffer.alloc(0), Buffer.from([0])).map((k) => toKeyValue(k, false));
  }

  /** Changes from `fromRevision` on, or undefined when some of them are no longer kept (as after compaction). */
  changesSince(fromRevision: bigint): Array<{ revision: bigint; events: StoreEvent[] }> | undefined {
    if (fromRevision <= this.compacted) return undefined;
    // One entry per revision, in order: the history is contiguous.
    const first = this.history[this.historyStart]?.revision ?? this.rev + 1n;
    return fromRevision > this.rev ? [] : this.history.slice(this.historyStart + Math.max(0, Number(fromRevision - first)));
  }

  /** Called after every write, with the changes of its revision. */
  onChange(listener: (revision: bigint, events: StoreEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    for (const lease of this.leases.values()) lease.timer?.cancel();
    this.listeners.clear();
  }

  private arm(id: bigint, lease: StoredLease): void {
    lease.timer?.cancel();
    const ms = lease.ttl * 1000;
    lease.expiresAt = this.clock.monotonic() + ms;
    if (ms > MAX_TIMER_MS) return;
    lease.timer = this.clock.setTimer(() => this.leases.has(id) && this.revoke(id), ms, { unref: true });
  }

  /** Runs one write request; the revision moves on (and watchers hear of it) only if something changed. */
  private write<T extends { header?: IResponseHeader }>(apply: () => T | void): T {
    this.pending = [];
    const res = (apply() ?? {}) as T;
    const events = this.pending;
    this.pending = [];
    if (events.length > 0) {
      this.rev += 1n;
      this.history.push({ revision: this.rev, events });
      if (this.history.length - this.historyStart > HISTORY_REVISIONS) this.compactOne();
    }
    res.header = this.header();
    if (events.length > 0) for (const listener of [...this.listeners]) listener(this.rev, events);
    return res;
  }

  /** Forgets the oldest kept revision. */
  private compactOne(): void {
    this.compacted = this.history[this.historyStart].revision;
    this.historyStart += 1;
    if (this.historyStart >= HISTORY_REVISIONS) {
      this.history.splice(0, this.historyStart);
      this.historyStart = 0;
    }
  }

  /** One operation of a transaction: the name of its answer and the answer. */
  private applyOp(op: Op, revision: bigint): [string, object] {
    if (op.request_range) return ['response_range', this.range(op.request_range)];
    if (op.request_put) return ['response_put', this.applyPut(op.request_put, revision)];
    if (op.request_delete_range) return ['response_delete_range', this.applyDelete(op.request_delete_range, revision)];
    throw new Error('InMemoryEtcd does not support nested transactions');
  }

  private applyPut(req: IPutRequest, revision: bigint): IPutResponse {
    const key = toBuffer(req.key);
    if (key.length === 0) throw etcdError(3, 'INVALID_ARGUMENT', 'etcdserver: key is not provided');
    if (req.ignore_value || req.ignore_lease) throw new Error('InMemoryEtcd does not support ignore_value / ignore_lease');
    const lease = this.checkLease(req.lease);
    const id = key.toString('latin1');
    const prev = this.keys.get(id);
    const prevKv = prev && req.prev_kv ? toKeyValue(prev, false) : null;
    if (prev && prev.lease !== 0n) this.leases.get(prev.lease)?.keys.delete(id);
    const stored: StoredKey = prev ?? { id, key, value: Buffer.alloc(0), create: revision, mod: revision, version: 0n, lease: 0n };
    stored.value = Buffer.from(toBuffer(req.value));
    stored.mod = revision;
    stored.version += 1n;
    stored.lease = lease;
    this.keys.set(id, stored);
    if (lease !== 0n) this.leases.get(lease)?.keys.add(id);
    this.pending.push({ type: 'Put', kv: toKeyValue(stored, false) });
    return { prev_kv: prevKv } as unknown as IPutResponse;
  }

  private applyDelete(req: IDeleteRangeRequest, revision: bigint): IDeleteRangeResponse {
    const doomed = this.select(req.key, req.range_end);
    const prevKvs = req.prev_kv ? doomed.map((k) => toKeyValue(k, false)) : [];
    for (const k of doomed) this.remove(k, revision);
    return { deleted: doomed.length.toString(), prev_kvs: prevKvs } as unknown as IDeleteRangeResponse;
  }

  private remove(k: StoredKey, revision: bigint): void {
    this.keys.delete(k.id);
    if (k.lease !== 0n) this.leases.get(k.lease)?.keys.delete(k.id);
    const kv: IKeyValue = {
      key: k.key,
      create_revision: '0',
      mod_revision: revision.toString(),
      version: '0',
      value: Buffer.alloc(0),
      lease: '0',
    };
    this.pending.push({ type: 'Delete', kv });
  }

  private checkLease(lease: Numeric): bigint {
    const id = BigInt(num(lease));
    if (id !== 0n && !this.leases.has(id)) throw etcdError(5, 'NOT_FOUND', 'etcdserver: requested lease not found');
    return id;
  }

  /** etcd's compare: over every key of a range; a range with no key compares as a key with zero fields. */
  private compare(c: Compare): boolean {
    const target = enumValue(CompareTarget, c.target, CompareTarget.Version);
    const result = enumValue(CompareResult, c.result, CompareResult.Equal);
    const found = this.select(c.key, c.range_end);
    // etcd: comparing the value of a key that does not exist always fails.
    if (found.length === 0) return target !== CompareTarget.Value && compareField(target, result, undefined, c);
    return found.every((k) => compareField(target, result, k, c));
  }

  /** The keys in the range, in key order. */
  private select(key: Buffer | string | undefined, rangeEnd: Buffer | string | undefined): StoredKey[] {
    if (toBuffer(rangeEnd).length === 0) {
      const k = this.keys.get(toBuffer(key).toString('latin1'));
      return k ? [k] : [];
    }
    const inRange = keyRange(key, rangeEnd);
    const found: StoredKey[] = [];
    for (const k of this.keys.values()) if (inRange(k.key)) found.push(k);
    return found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}

function randomId(taken: Map<bigint, unknown>): bigint {
  for (;;) {
    const id = BigInt(Math.floor(Math.random() * 2 ** 53)) + 1n;
    if (!taken.has(id)) return id;
  }
}
