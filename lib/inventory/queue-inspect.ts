import type { EtcdPort } from '../etcd/etcd-port.js';
import { type KeyKind, namePrefix, rootPrefix } from '../etcd/keys.js';
import { oldestFirst } from '../etcd/requests.js';
import { queueKeyFilter } from '../queue/holder-watch.js';
import { type Contender, queues, readWriteLocks, semaphoreOf } from './inventory.js';

/** One key in a name's queue, as `inspect()` returns it. */
export interface QueueEntry {
  /** 0 for the first holder; holders come first, then the waiters in the order they will be served. */
  readonly position: number;
  /** The key's value: the identity of the instance that holds or waits, unless the app stored its own value. */
  readonly value: string;
  /** The key's create revision: its fencing token once it holds. */
  readonly fencingToken: bigint;
  /** The lease (session) the key lives on, in hex. */
  readonly leaseId: string;
  /** The key itself. */
  readonly key: string;
  /** For read/write locks: what the key holds or waits for. */
  readonly mode?: 'read' | 'write';
}

/** Who holds a name and who waits for it, read at one etcd revision. */
export interface QueueSnapshot {
  /** The name inspected. */
  readonly name: string;
  /** Who holds it (the leader; the permits held; the readers or the writer), oldest first. */
  readonly holders: readonly QueueEntry[];
  /** Who waits, in the order they will be served. */
  readonly waiters: readonly QueueEntry[];
  /** The etcd revision it was read at. */
  readonly revision: bigint;
}

/** Reads the queue of one name of `kind` in one request (a lock, a semaphore, a read/write lock, an election). */
export async function inspectQueue(rpc: EtcdPort, prefix: string, kind: KeyKind, name: string): Promise<QueueSnapshot> {
  const under = namePrefix(prefix, kind, name);
  const res = await rpc.range(oldestFirst(Buffer.from(under)), `read the queue of ${kind} '${name}'`);
  const kvs = res.kvs.filter(queueKeyFilter(kind, under));
  const skip = rootPrefix(prefix, kind).length;
  let holders: ReadonlyArray<Contender & { mode?: 'read' | 'write' }> = [];
  let waiters: ReadonlyArray<Contender & { mode?: 'read' | 'write' }> = [];
  if (kind === 'rwlock') {
    const [state] = readWriteLocks(kvs, skip);
    if (state) ({ holders, waiters } = state);
  } else {
    const [queue] = queues(kvs, skip);
    if (queue && kind === 'semaphore') ({ holders, waiters } = semaphoreOf(queue));
    else if (queue) [holders, waiters] = [[queue.holder], queue.waiters];
  }
  const entry = (c: Contender & { mode?: 'read' | 'write' }, position: number): QueueEntry => ({
    position,
    value: c.value,
    fencingToken: c.createRevision,
    leaseId: c.lease,
    key: c.key,
    ...(c.mode ? { mode: c.mode } : {}),
  });
  return {
    name,
    holders: holders.map((c, i) => entry(c, i)),
    waiters: waiters.map((c, i) => entry(c, holders.length + i)),
    revision: BigInt(res.header.revision),
  };
}
