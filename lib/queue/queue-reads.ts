import type { IKeyValue } from 'etcd3';
import { isQueueKey, prefixRangeEnd } from '../etcd/keys.js';
import { oldestFirst } from '../etcd/requests.js';
import type { OwnKeys } from './own-keys.js';
import type { QueueContext } from './queue-context.js';

/**
 * Whether every slot of a name is held or waited for now, by one read (served without a raft round) of `slots` keys
 * under `waitPrefix` (the oldest, for a semaphore). When a key read does not count (deeper under the name, a stale one of ours) or
 * the limit in force is not `slots`, it cannot tell and says false: the join that follows decides.
 */
export async function isBusy(ctx: QueueContext, own: OwnKeys, waitPrefix: Buffer, slots: number): Promise<boolean> {
  // Sorted by age only where the oldest key matters (it sets a semaphore's limit): etcd sorts the whole range first.
  const read = ctx.slotsOf
    ? oldestFirst(waitPrefix, { limit: slots, keys_only: true })
    : { key: waitPrefix, range_end: prefixRangeEnd(waitPrefix), limit: slots, keys_only: true };
  const res = await ctx.rpc.range(read, `check whether '${ctx.name}' is held`);
  const start = Buffer.byteLength(ctx.namePrefix);
  const counted = res.kvs.filter((kv) => isQueueKey(ctx.kind, kv.key.subarray(start).toString()) && !own.isStale(kv));
  if (counted.length < res.kvs.length || counted.length === 0) return false;
  const inForce = ctx.slotsOf ? ctx.slotsOf(counted[0].key.toString()) : slots;
  return inForce <= slots && counted.length >= inForce;
}

/**
 * The contenders' keys among `kvs` (ours, `ourKey`, included): not keys deeper under the name (other locks'), and
 * not stale keys of our own lease, which a join or release of ours that landed late left: those are deleted first
 * (see `OwnKeys`), so that others, too, stop counting them by the time we act.
 */
export function contendersAmong(
  ctx: QueueContext,
  own: OwnKeys,
  ourKey: Buffer,
  kvs: IKeyValue[],
): { keys: IKeyValue[]; removed: Promise<unknown> | undefined } {
  // In bytes: a name may be any UTF-8.
  const start = Buffer.byteLength(ctx.namePrefix);
  const stale: Array<Promise<void>> = [];
  const keys = kvs.filter((kv) => {
    if (kv.key.equals(ourKey)) return true;
    if (!isQueueKey(ctx.kind, kv.key.subarray(start).toString())) return false;
    if (!own.isStale(kv)) return true;
    stale.push(own.remove(ctx.rpc, kv.key, kv.create_revision));
    return false;
  });
  return { keys, removed: stale.length > 0 ? Promise.all(stale) : undefined };
}
