import type { IKeyValue } from 'etcd3';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { KEY_ROOTS, type KeyKind, type KeyRoot, assignmentsRoot, leaseHex, membersRoot, rootPrefix } from '../etcd/keys.js';
import { limitOfKey } from '../semaphores/permit-key.js';
import { parseAssignment } from '../sharding/assignment.js';
import { oldestFirst } from '../etcd/requests.js';

/** One key in a queue: a contender for a lock, an election or a shard. */
export interface Contender {
  readonly key: string;
  /** The key's value: the holder's identity, unless the app stored a value of its own. */
  readonly value: string;
  /** The lease the key lives on, in hex (as `etcdctl lease list` and our keys write it). */
  readonly lease: string;
  /** The key's create revision: the fencing token, for the first in the queue. */
  readonly createRevision: bigint;
}

/** A name with its queue in arrival order: the first holds it, the rest wait. */
export interface Queue {
  readonly name: string;
  readonly holder: Contender;
  readonly waiters: readonly Contender[];
}

export interface ShardGroupState {
  readonly group: string;
  /** The shard count in the assignment record, if there is one. */
  readonly shards: number | undefined;
  /** Live members (identity, lease), oldest first. */
  readonly members: ReadonlyArray<{ readonly identity: string; readonly lease: string }>;
  /** What the record assigns: identity to shards. */
  readonly assigned: Readonly<Record<string, readonly number[]>>;
  /** Who holds each shard's lock now (shards nobody holds are absent). */
  readonly held: ReadonlyMap<number, Contender>;
}

/** A semaphore: the permits held (the `limit` oldest keys) and the callers waiting, in arrival order. */
export interface SemaphoreState {
  readonly name: string;
  readonly limit: number | undefined;
  readonly holders: readonly Contender[];
  readonly waiters: readonly Contender[];
}

/** A read/write lock: who holds it (readers, or one writer) and who waits, in arrival order. */
export interface ReadWriteLockState {
  readonly name: string;
  readonly holders: ReadonlyArray<Contender & { readonly mode: 'read' | 'write' }>;
  readonly waiters: ReadonlyArray<Contender & { readonly mode: 'read' | 'write' }>;
}

export interface SessionState {
  readonly lease: string;
  /** Seconds left on the lease when read, and the TTL it was granted with (`-1`: gone by then). */
  readonly ttl: number;
  readonly grantedTtl: number;
  /** The identities its keys carry (usually one). */
  readonly identities: readonly string[];
  /** What it holds or waits for, one phrase each: `holds lock x`, `leads election y`, `shard tenants/3`. */
  readonly holds: readonly string[];
}

/** Everything the library keeps under one prefix, read at one etcd revision. */
export interface Inventory {
  readonly revision: bigint;
  /** How long the reads took (the keys, then the leases' TTLs), in ms. */
  readonly readMs: number;
  readonly locks: readonly Queue[];
  readonly elections: readonly Queue[];
  readonly shardGroups: readonly ShardGroupState[];
  readonly semaphores: readonly SemaphoreState[];
  readonly rwlocks: readonly ReadWriteLockState[];
  readonly sessions: readonly SessionState[];
}

/**
 * The TTLs of the leases an inventory shows, read once per lease and again only once its holder has renewed it
 * since (a third of its TTL later): a watch that reads the inventory at every change does not ask etcd about every
 * replica's lease each time. In between, the seconds left are counted down from the last read.
 */
export class LeaseTtls {
  private readonly known = new Map<string, { ttl: number; granted: number; at: number }>();

  async read(rpc: EtcdPort, leases: ReadonlySet<string>): Promise<Map<string, { ttl: number; granted: number }>> {
    const now = Date.now();
    for (const id of this.known.keys()) if (!leases.has(id)) this.known.delete(id);
    const stale = [...leases].filter((id) => {
      const seen = this.known.get(id);
      return !seen || seen.ttl < 0 || now - seen.at >= Math.max(1000, (seen.granted * 1000) / 3);
    });
    await Promise.all(
      stale.map(async (id) => {
        const ttl = await rpc.leaseTimeToLive(id);
        this.known.set(id, { ttl: ttl?.ttl ?? -1, granted: ttl?.grantedTtl ?? 0, at: Date.now() });
      }),
    );
    const ttls = new Map<string, { ttl: number; granted: number }>();
    for (const id of leases) {
      const { ttl, granted, at } = this.known.get(id) as { ttl: number; granted: number; at: number };
      ttls.set(leaseHex(id), { ttl: ttl < 0 ? ttl : Math.max(0, ttl - Math.floor((Date.now() - at) / 1000)), granted });
    }
    return ttls;
  }
}

/**
 * Reads the library's keys under `prefix`: one transaction of a range per key root (`KEY_ROOTS`: locks,
 * elections, shard locks, semaphores, read/write locks, sharding members, assignment records) at one revision,
 * then one TTL lookup per lease seen (per lease not looked up lately, with the `leaseTtls` of an earlier read).
 * Keys of other layouts under the prefix are not read.
 */
export async function readInventory(rpc: EtcdPort, prefix: string, leaseTtls = new LeaseTtls()): Promise<Inventory> {
  const started = performance.now();
  const res = await rpc.txn(
    {
      compare: [],
      success: KEY_ROOTS.map((root) => {
        const key = Buffer.from(rootPrefix(prefix, root));
        return { request_range: oldestFirst(key) };
      }),
    },
    `read the keys under the prefix '${prefix}'`,
  );
  const kvs = res.responses.map((r) => r.response_range.kvs);
  const under = (root: KeyRoot) => kvs[KEY_ROOTS.indexOf(root)];
  const queuesOf = (kind: KeyKind) => queues(under(kind), rootPrefix(prefix, kind).length);
  const locks = queuesOf('lock');
  const elections = queuesOf('election');
  const shardGroups = groups(queuesOf('shard'), under('member'), under('assignment'), prefix);
  const semaphores = queuesOf('semaphore').map(semaphoreOf);
  const rwlocks = readWriteLocks(under('rwlock'), rootPrefix(prefix, 'rwlock').length);

  const leases = new Set<string>();
  for (const list of kvs) for (const kv of list) if (kv.lease !== '0') leases.add(kv.lease);
  const ttls = await leaseTtls.read(rpc, leases);
  return {
    revision: BigInt(res.header.revision),
    readMs: performance.now() - started,
    locks,
    elections,
    shardGroups,
    semaphores,
    rwlocks,
    sessions: sessions(ttls, { locks, elections, shardGroups, semaphores, rwlocks }),
  };
}

/** Keys `<kind prefix><name>/<lease hex>` grouped by name, each queue in create-revision order. */
export function queues(kvs: readonly IKeyValue[], skip: number): Queue[] {
  const byName = new Map<string, Contender[]>();
  for (const kv of kvs) {
    const rest = kv.key.toString().slice(skip);
    const slash = rest.lastIndexOf('/');
    if (slash <= 0) continue;
    const name = rest.slice(0, slash);
    const list = byName.get(name) ?? [];
    list.push(contender(kv));
    byName.set(name, list);
  }
  return [...byName]
    .map(([name, list]) => {
      list.sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1));
      return { name, holder: list[0], waiters: list.slice(1) };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

function groups(
  shardQueues: readonly Queue[],
  members: readonly IKeyValue[],
  records: readonly IKeyValue[],
  prefix: string,
): ShardGroupState[] {
  const names = new Set<string>();
  const held = new Map<string, Map<number, Contender>>();
  for (const queue of shardQueues) {
    const slash = queue.name.lastIndexOf('/');
    const group = queue.name.slice(0, slash);
    const index = Number(queue.name.slice(slash + 1));
    if (slash <= 0 || !Number.isInteger(index)) continue;
    names.add(group);
    const map = held.get(group) ?? new Map<number, Contender>();
    map.set(index, queue.holder);
    held.set(group, map);
  }
  const memberSkip = membersRoot(prefix).length;
  const live = new Map<string, Array<{ identity: string; lease: string }>>();
  for (const kv of members) {
    const [group, lease] = kv.key.toString().slice(memberSkip).split('/');
    if (!group || !lease) continue;
    names.add(group);
    live.set(group, [...(live.get(group) ?? []), { identity: kv.value.toString(), lease }]);
  }
  const recordSkip = assignmentsRoot(prefix).length;
  const record = new Map<string, ReturnType<typeof parseAssignment>>();
  for (const kv of records) {
    const [group] = kv.key.toString().slice(recordSkip).split('/');
    if (!group) continue;
    names.add(group);
    record.set(group, parseAssignment(kv.value.toString()));
  }
  return [...names].sort().map((group) => ({
    group,
    shards: record.get(group)?.shards,
    members: live.get(group) ?? [],
    assigned: record.get(group)?.owners ?? {},
    held: new Map([...(held.get(group) ?? new Map<number, Contender>())].sort(([a], [b]) => a - b)),
  }));
}

/** The `limit` oldest keys of a semaphore hold; its limit is in each key's name (`…-<n>-of-<limit>`). */
export function semaphoreOf(queue: Queue): SemaphoreState {
  const all = [queue.holder, ...queue.waiters];
  const limit = limitOfKey(queue.holder.key);
  const held = limit ?? 1;
  return { name: queue.name, limit, holders: all.slice(0, held), waiters: all.slice(held) };
}

/** Keys `<name>/read/…` and `<name>/write/…`: readers hold while no writer is ahead of them, a writer when first. */
export function readWriteLocks(kvs: readonly IKeyValue[], skip: number): ReadWriteLockState[] {
  const byName = new Map<string, Array<Contender & { mode: 'read' | 'write' }>>();
  for (const kv of kvs) {
    const match = /^(.+)\/(read|write)\/[^/]+$/.exec(kv.key.toString().slice(skip));
    if (!match) continue;
    byName.set(match[1], [...(byName.get(match[1]) ?? []), { ...contender(kv), mode: match[2] as 'read' | 'write' }]);
  }
  return [...byName]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, list]) => {
      list.sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1));
      const firstWriter = list.findIndex((c) => c.mode === 'write');
      const held = firstWriter === 0 ? 1 : firstWriter < 0 ? list.length : firstWriter;
      return { name, holders: list.slice(0, held), waiters: list.slice(held) };
    });
}

interface Held {
  readonly locks: readonly Queue[];
  readonly elections: readonly Queue[];
  readonly shardGroups: readonly ShardGroupState[];
  readonly semaphores: readonly SemaphoreState[];
  readonly rwlocks: readonly ReadWriteLockState[];
}

function sessions(ttls: ReadonlyMap<string, { ttl: number; granted: number }>, held: Held): SessionState[] {
  const { locks, elections, shardGroups, semaphores, rwlocks } = held;
  const holds = new Map<string, string[]>();
  const identities = new Map<string, Set<string>>();
  const note = (lease: string, identity: string | undefined, phrase: string) => {
    holds.set(lease, [...(holds.get(lease) ?? []), phrase]);
    if (identity !== undefined) identities.set(lease, (identities.get(lease) ?? new Set()).add(identity));
  };
  for (const q of locks) {
    note(q.holder.lease, undefined, `holds lock ${q.name}`);
    for (const [i, w] of q.waiters.entries()) note(w.lease, undefined, `waits for lock ${q.name} (#${i + 1})`);
  }
  for (const q of elections) {
    note(q.holder.lease, q.holder.value, `leads ${q.name}`);
    for (const [i, w] of q.waiters.entries()) note(w.lease, w.value, `candidate in ${q.name} (#${i + 1})`);
  }
  for (const sem of semaphores) {
    for (const h of sem.holders) note(h.lease, undefined, `holds a permit of ${sem.name}`);
    for (const [i, w] of sem.waiters.entries()) note(w.lease, undefined, `waits for a permit of ${sem.name} (#${i + 1})`);
  }
  for (const rw of rwlocks) {
    for (const h of rw.holders) note(h.lease, undefined, `${h.mode === 'read' ? 'reads' : 'writes'} ${rw.name}`);
    for (const [i, w] of rw.waiters.entries()) note(w.lease, undefined, `waits to ${w.mode} ${rw.name} (#${i + 1})`);
  }
  for (const g of shardGroups) {
    for (const m of g.members) note(m.lease, m.identity, `member of ${g.group}`);
    const owned = new Map<string, number[]>();
    for (const [index, c] of g.held) {
      owned.set(c.lease, [...(owned.get(c.lease) ?? []), index]);
      // A shard's lock carries its owner's identity.
      identities.set(c.lease, (identities.get(c.lease) ?? new Set()).add(c.value));
    }
    for (const [lease, shards] of owned) note(lease, undefined, `owns shards ${g.group}/${ranges(shards)}`);
  }
  return [...ttls].map(([lease, { ttl, granted }]) => ({
    lease,
    ttl,
    grantedTtl: granted,
    identities: [...(identities.get(lease) ?? [])],
    holds: holds.get(lease) ?? [],
  }));
}

/** `0-3,7,9-10`: sorted shard indexes, runs collapsed. */
export function ranges(indexes: readonly number[]): string {
  const sorted = [...indexes].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : `${sorted[i]}`);
    i = j;
  }
  return parts.join(',');
}

function contender(kv: IKeyValue): Contender {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    lease: kv.lease === '0' ? '0' : leaseHex(kv.lease),
    createRevision: BigInt(kv.create_revision),
  };
}
