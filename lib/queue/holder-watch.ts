import type { IKeyValue } from 'etcd3';
import { Observable, map } from 'rxjs';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { isQueueKey, type KeyKind, prefixRangeEnd } from '../etcd/keys.js';
import { oldestFirst } from '../etcd/requests.js';
import { ResilientWatch } from '../etcd/resilient-watch.js';
import type { LockHolder } from '../locks/lock.interface.js';

/** Whether a key read under `namePrefix` is a contender's (not a key deeper under the name: another lock's). */
export function queueKeyFilter(kind: KeyKind, namePrefix: string): (kv: IKeyValue) => boolean {
  const start = Buffer.byteLength(namePrefix);
  return (kv) => isQueueKey(kind, kv.key.subarray(start).toString());
}

/**
 * Reads who owns a name now: the contender's key with the lowest create revision under its prefix. One read of the
 * oldest key; a second of them all only when that one is deeper under the name (another lock's).
 */
export async function readHolder(rpc: EtcdPort, kind: KeyKind, namePrefix: string): Promise<LockHolder | null> {
  const prefix = Buffer.from(namePrefix);
  const isQueued = queueKeyFilter(kind, namePrefix);
  const read = (limit?: number) => rpc.range(oldestFirst(prefix, { limit }), `read the holder of '${namePrefix}'`);
  const oldest = (await read(1)).kvs[0];
  if (!oldest) return null;
  if (isQueued(oldest)) return toHolder(oldest);
  const holder = (await read()).kvs.find(isQueued);
  return holder ? toHolder(holder) : null;
}

/**
 * Every change of a name's holder, or of the holder's value, `null` while free. One range, then one watch from
 * the next revision (no gap, no polling); if etcd cancels the watch (compaction), it reads again and goes on.
 * Errors reaching etcd are retried; the observable only completes when unsubscribed.
 */
export function watchHolder(rpc: EtcdPort, kind: KeyKind, namePrefix: string): Observable<LockHolder | null> {
  return watchQueue(rpc, kind, namePrefix, 1).pipe(map((holders) => holders[0] ?? null));
}

/** The `slots` oldest keys under a name (its holders), in create order, at every change of them or their values. */
export function watchQueue(
  rpc: EtcdPort,
  kind: KeyKind,
  namePrefix: string,
  slots: number | ((oldestKey: string) => number),
): Observable<LockHolder[]> {
  return new Observable<LockHolder[]>((subscriber) => {
    const prefix = Buffer.from(namePrefix);
    const isQueued = queueKeyFilter(kind, namePrefix);
    const keys = new Map<string, IKeyValue>();
    let last: LockHolder[] | undefined;

    const emit = () => {
      const sorted = [...keys.values()].sort((a, b) => (BigInt(a.create_revision) < BigInt(b.create_revision) ? -1 : 1));
      const n = sorted.length === 0 ? 0 : typeof slots === 'number' ? slots : slots(sorted[0].key.toString());
      const next = sorted.slice(0, n).map(toHolder);
      if (last !== undefined && last.length === next.length && last.every((h, i) => sameHolder(h, next[i]))) return;
      last = next;
      subscriber.next(next);
    };

    const watch = new ResilientWatch(
      rpc,
      { prefix: namePrefix },
      {
        read: async () => {
          const res = await rpc.range({ key: prefix, range_end: prefixRangeEnd(prefix) }, `read '${namePrefix}'`);
          keys.clear();
          for (const kv of res.kvs) if (isQueued(kv)) keys.set(kv.key.toString(), kv);
          // The subscriber may unsubscribe during this emit (e.g. firstValueFrom): the watch then never starts.
          emit();
          return BigInt(res.header.revision);
        },
        onEvent: (type, kv) => {
          if (type === 'delete') keys.delete(kv.key.toString());
          else if (isQueued(kv)) keys.set(kv.key.toString(), kv);
          else return;
          emit();
        },
      },
    ).start();
    return () => void watch.close();
  });
}

/** A key as a holder: its fencing token is its create revision. */
export function toHolder(kv: IKeyValue): LockHolder {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    fencingToken: BigInt(kv.create_revision),
    leaseId: kv.lease === '0' ? '0' : BigInt(kv.lease).toString(16),
  };
}

function sameHolder(a: LockHolder, b: LockHolder): boolean {
  return a.key === b.key && a.fencingToken === b.fencingToken && a.value === b.value;
}
