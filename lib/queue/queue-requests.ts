import type { ICompare, IKeyValue, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import { createdAt, nothingUnder, oldestFirst } from '../etcd/requests.js';

/**
 * The transactions of etcd's queue recipe, one request each. A contender's key is `<name prefix><lease hex>`;
 * the key with the lowest create revision under the prefix owns the name.
 */

/**
 * Join: put our key if no key exists in the range we wait for (`waitPrefix`: the name's whole queue, or a part
 * of it, e.g. the writers for a reader); otherwise (unless `onlyIfFree`) put it anyway and read the keys there by
 * create revision, so the one request tells who is ahead. With `onlyIfFree` a taken range reads only its oldest key.
 * When our key is outside that range and the join is sent again (`ownKeyOutside`), both branches also read it, for
 * its create revision: a retried join whose first attempt was applied keeps the first one. A `guard` (only with `onlyIfFree`) adds
 * compares and writes to the join, and reads or writes to its failure (see `QueueContext.joinGuard`).
 */
export function joinRequest(
  waitPrefix: Buffer,
  key: Buffer,
  value: string,
  lease: string,
  onlyIfFree: boolean,
  ownKeyOutside = false,
  guard?: { compares: ICompare[]; success: IRequestOp[]; failure: IRequestOp[] },
): ITxnRequest {
  const put: IRequestOp = { request_put: { key, value: Buffer.from(value), lease } };
  const own: IRequestOp[] = ownKeyOutside ? [{ request_range: { key, keys_only: true } }] : [];
  return {
    compare: [nothingUnder(waitPrefix), ...(guard?.compares ?? [])],
    success: [put, ...own, ...(guard?.success ?? [])],
    failure: onlyIfFree
      ? [...own, ...(guard?.failure ?? []), { request_range: oldestFirst(waitPrefix, { limit: 1, keys_only: true }) }]
      : [put, ...own, { request_range: oldestFirst(waitPrefix, { keys_only: true }) }],
  };
}

/**
 * What a join answered, in `joinRequest`'s layout: our key read on its own (`ownKeyOutside` only) and the keys of
 * the range we wait for, oldest first (empty when the join succeeded).
 */
export function readJoin(
  res: ITxnResponse,
  onlyIfFree: boolean,
  ownKeyOutside: boolean,
): { own: IKeyValue | undefined; queue: IKeyValue[] } {
  const own = ownKeyOutside ? res.responses[res.succeeded || !onlyIfFree ? 1 : 0].response_range.kvs[0] : undefined;
  const queue = res.succeeded ? [] : res.responses[res.responses.length - 1].response_range.kvs;
  return { own, queue };
}

/** The compare that holds only while `key` exists with `createRevision`: the fence of every guarded write. */
export function fenceCompare(key: Buffer, createRevision: bigint): ICompare {
  return createdAt(key, createRevision);
}

/** Leave: delete our key only if it is still the one we created. */
export function releaseRequest(key: Buffer, createRevision: bigint): ITxnRequest {
  return { compare: [fenceCompare(key, createRevision)], success: [{ request_delete_range: { key } }] };
}

/** Resync: our key, and the keys we wait for (under `waitPrefix`) created before it that still exist. */
export function resyncRequest(waitPrefix: Buffer, key: Buffer, createRevision: bigint): ITxnRequest {
  return {
    compare: [],
    success: [
      { request_range: { key } },
      { request_range: oldestFirst(waitPrefix, { max_create_revision: (createRevision - 1n).toString(), keys_only: true }) },
    ],
  };
}
