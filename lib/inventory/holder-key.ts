import type { EtcdPort } from '../etcd/etcd-port.js';
import { namePrefix } from '../etcd/keys.js';
import { createdAt, oldestFirst } from '../etcd/requests.js';
import { queueKeyFilter } from '../queue/holder-watch.js';

/** The key of a lock's holder or an election's leader, as read: what an operator confirms before deleting it. */
export interface HolderKey {
  readonly key: string;
  /** The holder's identity (or the value the app stored). */
  readonly value: string;
  /** The key's create revision: the holder's fencing token. */
  readonly token: bigint;
  /** The value of the next in line, if anyone waits. */
  readonly next: string | undefined;
}

/** What an operator may take from a holder: a lock's holder key, or an election's leader key. */
export type HolderKind = 'lock' | 'election';

/** Reads the holder of lock (or election) `name` under `prefix`, in one request; undefined if nobody holds it. */
export async function readHolderKey(rpc: EtcdPort, prefix: string, kind: HolderKind, name: string): Promise<HolderKey | undefined> {
  const root = namePrefix(prefix, kind, name);
  const res = await rpc.range(oldestFirst(Buffer.from(root)), `read the holder of ${kind} '${name}'`);
  // Keys deeper under the name are other locks' (`etcdctl lock lock/a/b` under lock 'a'): never its holder.
  const [holder, next] = res.kvs.filter(queueKeyFilter(kind, root));
  if (!holder) return undefined;
  return {
    key: holder.key.toString(),
    value: holder.value.toString(),
    token: BigInt(holder.create_revision),
    next: next?.value.toString(),
  };
}

/**
 * Deletes a holder's key only if it is still the one with fencing token `token` (the holder the operator saw): if
 * another took over meanwhile, nothing is deleted and this resolves false. The holder's signal then aborts
 * (`key-deleted`) and the next in line takes over. The CLI's `release`/`resign` and the dashboard's actions.
 */
export async function deleteHolderKey(rpc: EtcdPort, kind: HolderKind, name: string, key: string, token: bigint): Promise<boolean> {
  const res = await rpc.txn(
    { compare: [createdAt(Buffer.from(key), token.toString())], success: [{ request_delete_range: { key: Buffer.from(key) } }] },
    `delete the ${kind === 'lock' ? 'holder' : 'leader'} key of ${kind} '${name}'`,
  );
  return res.succeeded;
}
