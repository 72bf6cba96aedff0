import { type Inventory, type Queue, ranges } from '../inventory/inventory.js';
import { printable } from '../util/printable.js';

/** Rows under a header, columns padded to their widest cell. */
export function table(header: readonly string[], raw: ReadonlyArray<readonly string[]>): string[] {
  // Names and values are anyone's: a control sequence in one must not rewrite the screen.
  const rows = raw.map((row) => row.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function section(title: string, header: readonly string[], rows: ReadonlyArray<readonly string[]>, empty: string): string[] {
  return ['', title, ...(rows.length > 0 ? table(header, rows) : [`  ${empty}`])];
}

/**
 * The inventory as the readable tables `status` prints. How long a lock has been held is not shown: etcd keeps no
 * time for a key, only revisions, and a clock reading by this tool would be a guess.
 */
export function renderInventory(inv: Inventory, where: { endpoints: readonly string[]; prefix: string }): string {
  const ttlOf = new Map(inv.sessions.map((s) => [s.lease, s.ttl]));
  const ttl = (lease: string) => {
    const left = ttlOf.get(lease);
    if (left === undefined) return lease === '0' ? 'none' : '?';
    return left < 0 ? 'expired' : `${left}s`;
  };
  const queueRows = (queues: readonly Queue[]) =>
    queues.map((q) => [
      q.name,
      q.holder.value,
      q.holder.createRevision.toString(),
      q.holder.lease,
      ttl(q.holder.lease),
      q.waiters.map((w) => w.value).join(', ') || '-',
    ]);
  const lines = [
    printable(`etcd ${where.endpoints.join(',')}  prefix '${where.prefix}'  revision ${inv.revision}`),
    ...section('LOCKS', ['NAME', 'HOLDER', 'TOKEN', 'LEASE', 'TTL', 'WAITERS (in order)'], queueRows(inv.locks), 'no lock is held'),
    ...section(
      'ELECTIONS',
      ['NAME', 'LEADER', 'TERM', 'LEASE', 'TTL', 'CANDIDATES (in order)'],
      queueRows(inv.elections),
      'no election has a candidate',
    ),
  ];
  const shardRows: string[][] = [];
  for (const g of inv.shardGroups) {
    const heldBy = new Map<string, number[]>();
    for (const [index, holder] of g.held) heldBy.set(holder.value, [...(heldBy.get(holder.value) ?? []), index]);
    const identities = [...new Set([...g.members.map((m) => m.identity), ...Object.keys(g.assigned), ...heldBy.keys()])].sort();
    const shards = g.shards === undefined ? '?' : String(g.shards);
    identities.forEach((id, i) => {
      const live = g.members.some((m) => m.identity === id);
      shardRows.push([
        i === 0 ? g.group : '',
        i === 0 ? shards : '',
        live ? id : `${id} (gone)`,
        ranges(g.assigned[id] ?? []) || '-',
        ranges(heldBy.get(id) ?? []) || '-',
      ]);
    });
    if (g.shards !== undefined) {
      const free = [...Array(g.shards).keys()].filter((s) => !g.held.has(s));
      if (free.length > 0)
        shardRows.push(identities.length === 0 ? [g.group, shards, '(nobody)', '-', '-'] : ['', '', '(unowned)', '-', ranges(free)]);
    }
  }
  const names = (list: ReadonlyArray<{ value: string; createRevision: bigint; mode?: string }>) =>
    list.map((c) => `${c.mode ? `${c.mode} ` : ''}${c.value} (${c.createRevision})`).join(', ') || '-';
  lines.push(
    ...section(
      'SEMAPHORES',
      ['NAME', 'LIMIT', 'HOLDERS (token)', 'WAITERS (in order)'],
      inv.semaphores.map((sem) => [sem.name, String(sem.limit ?? '?'), names(sem.holders), names(sem.waiters)]),
      'no semaphore permit is held',
    ),
    ...section(
      'READ/WRITE LOCKS',
      ['NAME', 'HOLDERS (token)', 'WAITERS (in order)'],
      inv.rwlocks.map((rw) => [rw.name, names(rw.holders), names(rw.waiters)]),
      'no read/write lock is held',
    ),
  );
  lines.push(...section('SHARD GROUPS', ['GROUP', 'SHARDS', 'MEMBER', 'ASSIGNED', 'HELD'], shardRows, 'no sharding group'));
  const sessionRows = inv.sessions.map((s) => [
    s.lease,
    s.identities.join(', ') || '-',
    s.ttl < 0 ? 'expired' : `${s.ttl}s of ${s.grantedTtl}s`,
    s.holds.join('; '),
  ]);
  lines.push(...section('SESSIONS', ['LEASE', 'IDENTITY', 'TTL LEFT', 'HOLDS'], sessionRows, 'no session holds a key'));
  return `${lines.join('\n')}\n`;
}

/** The inventory as JSON: fencing tokens and revisions as decimal strings (JSON has no 64-bit integers). */
export function inventoryJson(inv: Inventory): unknown {
  const contender = (c: Queue['holder']) => ({ key: c.key, value: c.value, lease: c.lease, createRevision: c.createRevision.toString() });
  const queue = (q: Queue) => ({
    name: q.name,
    holder: contender(q.holder),
    fencingToken: q.holder.createRevision.toString(),
    waiters: q.waiters.map(contender),
  });
  return {
    revision: inv.revision.toString(),
    locks: inv.locks.map(queue),
    elections: inv.elections.map(queue),
    shardGroups: inv.shardGroups.map((g) => ({
      group: g.group,
      shards: g.shards ?? null,
      members: g.members,
      assigned: g.assigned,
      held: Object.fromEntries([...g.held].map(([index, c]) => [index, { ...contender(c), fencingToken: c.createRevision.toString() }])),
    })),
    semaphores: inv.semaphores.map((sem) => ({
      name: sem.name,
      limit: sem.limit ?? null,
      holders: sem.holders.map(contender),
      waiters: sem.waiters.map(contender),
    })),
    rwlocks: inv.rwlocks.map((rw) => ({
      name: rw.name,
      holders: rw.holders.map((c) => ({ mode: c.mode, ...contender(c) })),
      waiters: rw.waiters.map((c) => ({ mode: c.mode, ...contender(c) })),
    })),
    sessions: inv.sessions,
  };
}
