import type { IKeyValue, IRequestOp, ITxnRequest } from 'etcd3';
import { CompareResult, CompareTarget, castGrpcError, SortTarget } from '../etcd/requests.js';

/*
 * etcd's rules for the in-memory etcd, as pure functions: key ranges, compares, sorting, the duplicate-key check
 * of transactions, and the errors etcd3 throws. Each follows etcd 3.4's server code (mvcc and the applier).
 */

/** A key as etcd stores it; `id` is its bytes as a latin1 string, which sorts in etcd's byte order. */
export interface StoredKey {
  readonly id: string;
  readonly key: Buffer;
  value: Buffer;
  create: bigint;
  mod: bigint;
  version: bigint;
  lease: bigint;
}

export type Numeric = string | number | bigint | undefined | null;
export type Op = IRequestOp & { request_txn?: ITxnRequest };
type Enum = Record<string, string | number>;

/** etcd's key ranges: [key, range_end); no range_end means just `key`; range_end "\0" means every key from `key`. */
export function keyRange(key: Buffer | string | undefined, rangeEnd: Buffer | string | undefined): (k: Buffer) => boolean {
  const from = toBuffer(key);
  const end = toBuffer(rangeEnd);
  if (end.length === 0) return (k) => k.equals(from);
  const toTheEnd = end.length === 1 && end[0] === 0;
  return (k) => Buffer.compare(k, from) >= 0 && (toTheEnd || Buffer.compare(k, end) < 0);
}

/** A transaction compare, as etcd3 sends it. */
export interface Compare {
  key?: Buffer | string;
  range_end?: Buffer | string;
  target?: number | string;
  result?: number | string;
  version?: Numeric;
  create_revision?: Numeric;
  mod_revision?: Numeric;
  value?: Buffer | string;
  lease?: Numeric;
}

export function compareField(target: number, result: number, k: StoredKey | undefined, c: Compare): boolean {
  let order: number;
  if (target === CompareTarget.Value) {
    order = Buffer.compare(k?.value ?? Buffer.alloc(0), toBuffer(c.value));
  } else {
    const [have, want] =
      target === CompareTarget.Version
        ? [k?.version, c.version]
        : target === CompareTarget.Create
          ? [k?.create, c.create_revision]
          : target === CompareTarget.Mod
            ? [k?.mod, c.mod_revision]
            : [k?.lease, c.lease];
    const a = have ?? 0n;
    const b = BigInt(num(want));
    order = a < b ? -1 : a > b ? 1 : 0;
  }
  if (result === CompareResult.Equal) return order === 0;
  if (result === CompareResult.NotEqual) return order !== 0;
  if (result === CompareResult.Greater) return order > 0;
  return order < 0;
}

/** etcd refuses a transaction branch that writes one key twice (two puts, or a put inside a deleted range). */
export function checkDuplicates(ops: Op[]): void {
  const puts = new Set<string>();
  for (const op of ops) {
    if (!op.request_put) continue;
    const id = toBuffer(op.request_put.key).toString('latin1');
    if (puts.has(id)) throw etcdError(3, 'INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request');
    puts.add(id);
  }
  for (const op of ops) {
    const del = op.request_delete_range;
    if (!del) continue;
    const deleted = keyRange(del.key, del.range_end);
    if ([...puts].some((id) => deleted(Buffer.from(id, 'latin1')))) {
      throw etcdError(3, 'INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request');
    }
  }
}

export function sortKeys(kvs: StoredKey[], target: number, descend: boolean): StoredKey[] {
  const field = (k: StoredKey): bigint | string =>
    target === SortTarget.Version
      ? k.version
      : target === SortTarget.Create
        ? k.create
        : target === SortTarget.Mod
          ? k.mod
          : target === SortTarget.Value
            ? k.value.toString('latin1')
            : k.id;
  const sorted = [...kvs].sort((a, b) => {
    const x = field(a);
    const y = field(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return descend ? sorted.reverse() : sorted;
}

export function within(v: bigint, min: Numeric, max: Numeric): boolean {
  const lo = BigInt(num(min));
  const hi = BigInt(num(max));
  return (lo === 0n || v >= lo) && (hi === 0n || v <= hi);
}

export function toKeyValue(k: StoredKey, keysOnly: boolean): IKeyValue {
  return {
    key: Buffer.from(k.key),
    create_revision: k.create.toString(),
    mod_revision: k.mod.toString(),
    version: k.version.toString(),
    value: keysOnly ? Buffer.alloc(0) : Buffer.from(k.value),
    lease: k.lease.toString(),
  };
}

export function enumValue(e: Enum, v: unknown, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'number') return v;
  const named = e[String(v)];
  if (typeof named === 'number') return named;
  throw new Error(`InMemoryEtcd: unknown enum value ${String(v)}`);
}

export function num(v: Numeric): string {
  return v === undefined || v === null || v === '' ? '0' : String(v);
}

export function toBuffer(v: Buffer | string | undefined | null): Buffer {
  if (v === undefined || v === null) return Buffer.alloc(0);
  return typeof v === 'string' ? Buffer.from(v) : v;
}

/** The error etcd3 throws when etcd answers with this gRPC status (etcd3's own classes, found as it finds them). */
export function etcdError(code: number, status: string, message: string): Error {
  return castGrpcError(Object.assign(new Error(`${code} ${status}: ${message}`), { code }));
}

/**
 * Runs `fn` on a later microtask, as a network answer arrives after the request. A promise job, not
 * `queueMicrotask`: jest's fake timers fake the latter, which would hold every answer until timers advance.
 */
export function later(fn: () => void): void {
  void Promise.resolve().then(fn);
}
