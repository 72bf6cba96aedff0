import { CompareResult, CompareTarget, castGrpcError, type ICompare, type IRangeRequest, SortOrder, SortTarget } from 'etcd3';
import { prefixRangeEnd } from './keys.js';

/**
 * The request shapes the recipes share, built in one place: how a queue is read and how a key's identity is
 * compared. Code outside `etcd/` builds requests with these and never touches etcd3's enums.
 */

/** Every key under `prefix`, oldest (lowest create revision) first: a queue in the order it is served. */
export function oldestFirst(prefix: Buffer, more: Pick<IRangeRequest, 'limit' | 'keys_only' | 'max_create_revision'> = {}): IRangeRequest {
  return { key: prefix, range_end: prefixRangeEnd(prefix), sort_order: SortOrder.Ascend, sort_target: SortTarget.Create, ...more };
}

/** Every key under `prefix`, last key first (the newest of keys named by time). */
export function lastKeysFirst(prefix: Buffer, more: Pick<IRangeRequest, 'limit' | 'keys_only'> = {}): IRangeRequest {
  return { key: prefix, range_end: prefixRangeEnd(prefix), sort_order: SortOrder.Descend, sort_target: SortTarget.Key, ...more };
}

/** `key` exists and was created at `revision`: it is still the key we know (a fencing token, a guarded delete). */
export function createdAt(key: Buffer, revision: bigint | string): ICompare {
  return { key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: revision.toString() };
}

/** No key exists under `prefix` (an empty range compares as create revision 0). */
export function nothingUnder(prefix: Buffer): ICompare {
  return {
    key: prefix,
    range_end: prefixRangeEnd(prefix),
    target: CompareTarget.Create,
    result: CompareResult.Equal,
    create_revision: '0',
  };
}

/** `key` exists (its version is above 0). */
export function exists(key: Buffer): ICompare {
  return { key, target: CompareTarget.Version, result: CompareResult.Greater, version: '0' };
}

/** No key exists from `key` (inclusive) to `rangeEnd` (exclusive). */
export function nothingBetween(key: Buffer, rangeEnd: Buffer): ICompare {
  return { key, range_end: rangeEnd, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' };
}

/** `key` was last written at `revision`: nobody wrote it since we did (a compare-and-swap). */
export function modifiedAt(key: Buffer, revision: bigint | string): ICompare {
  return { key, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: revision.toString() };
}

/**
 * etcd's wire enums and its error mapping: for the few places that compare on the caller's terms (`FencedTxn`) and
 * for the in-memory etcd, which implements the same protocol. Nothing outside `etcd/` imports etcd3's runtime.
 */
export { CompareResult, CompareTarget, SortOrder, SortTarget, castGrpcError };
