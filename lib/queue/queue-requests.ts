import { CompareResult, CompareTarget, type ICompare, type IRequestOp, type ITxnRequest, SortOrder, SortTarget } from 'etcd3';
import { prefixRangeEnd } from '../etcd/keys.js';

/**
 * The transactions of etcd's queue recipe, one request each. A contender's key is `<name prefix><lease hex>`;
 * the key with the lowest create revision under the prefix owns the name.
 */

/**
 * Join: put our key if no key exists under the name; otherwise (unless `onlyIfFree`) put it anyway and read the
 * keys by create revision, so the one request tells who is ahead. With `onlyIfFree` a taken name reads only the
 * oldest key (our own, if a retried join had been applied).
 */
export function joinRequest(namePrefix: Buffer, key: Buffer, value: string, lease: string, onlyIfFree: boolean): ITxnRequest {
  const rangeEnd = prefixRangeEnd(namePrefix);
  const put: IRequestOp = { request_put: { key, value: Buffer.from(value), lease } };
  const byCreate = { key: namePrefix, range_end: rangeEnd, sort_order: SortOrder.Ascend, sort_target: SortTarget.Create };
  return {
    // An empty range compares as create revision 0: "no key exists under this name".
    compare: [{ key: namePrefix, range_end: rangeEnd, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' }],
    success: [put],
    failure: onlyIfFree
      ? [{ request_range: { ...byCreate, limit: 1, keys_only: true } }]
      : [put, { request_range: { ...byCreate, keys_only: true } }],
  };
}

/** The compare that holds only while `key` exists with `createRevision`: the fence of every guarded write. */
export function fenceCompare(key: Buffer, createRevision: bigint): ICompare {
  return { key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: createRevision.toString() };
}

/** Leave: delete our key only if it is still the one we created. */
export function releaseRequest(key: Buffer, createRevision: bigint): ITxnRequest {
  return { compare: [fenceCompare(key, createRevision)], success: [{ request_delete_range: { key } }] };
}

/** Resync: our key, and the keys created before it that still exist. */
export function resyncRequest(namePrefix: Buffer, key: Buffer, createRevision: bigint): ITxnRequest {
  return {
    compare: [],
    success: [
      { request_range: { key } },
      {
        request_range: {
          key: namePrefix,
          range_end: prefixRangeEnd(namePrefix),
          max_create_revision: (createRevision - 1n).toString(),
          keys_only: true,
        },
      },
    ],
  };
}
