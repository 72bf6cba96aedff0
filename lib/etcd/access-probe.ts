import { CompareResult, CompareTarget, type IRequestOp } from 'etcd3';
import type { EtcdPort } from './etcd-port.js';
import { prefixRangeEnd } from './keys.js';

/**
 * Proves, in one request that changes nothing, that etcd lets this user do everything the library does under
 * `prefixes`: range, watch, put and delete. etcd checks the permissions of every operation of a transaction, in
 * both branches, before it evaluates the compare; this compare ("a create revision below 0") is never true, so
 * nothing runs. Deleting the whole range needs write permission on every key in it, so it covers our puts too
 * (a put beside it would be refused as a duplicate key). Without this check a role missing a permission would
 * surface only at the first acquire, or as a watch that etcd3 never reports as started.
 */
export async function checkAccess(rpc: EtcdPort, prefixes: readonly string[], timeoutMs: number): Promise<void> {
  const success: IRequestOp[] = [];
  const compare = prefixes.map((prefix) => {
    const key = Buffer.from(prefix);
    const range_end = prefixRangeEnd(key);
    success.push({ request_range: { key, range_end, keys_only: true } }, { request_delete_range: { key, range_end } });
    return { key, range_end, target: CompareTarget.Create, result: CompareResult.Less, create_revision: '0' };
  });
  const what = `read, watch, write and delete keys under ${prefixes.map((p) => `'${p}'`).join(' and ')}`;
  await rpc.txn({ compare, success, failure: [] }, what, timeoutMs);
}
