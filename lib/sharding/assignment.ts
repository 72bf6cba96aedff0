import { weight as rendezvousWeight } from './shard-hash.js';

/**
 * Who owns which shard of a group: the record kept in etcd (`<prefix>assignment/<group>/current`, JSON). Every
 * member derives the next record from the one in force with `rebalance`, and writes it only if the record did
 * not change meanwhile. Ownership itself is a lock per shard: the record says who should own, locks say who does.
 */
export interface Assignment {
  readonly shards: number;
  /** Member id (identity) to the shards it should own, ascending. */
  readonly owners: Readonly<Record<string, readonly number[]>>;
  /** Member id to the lease (hex) it had when the record was written: which processes it was written for. */
  readonly leases?: Readonly<Record<string, string>>;
}

/**
 * The next assignment, from the one in force (`previous`), the live members (ids) and the departed members whose
 * shards are kept for them a while (`reserved`: the sticky option). Deterministic, and:
 * - balanced: each live member gets ⌊A/R⌋ or ⌈A/R⌉ of the A shards not reserved;
 * - minimal: a live member keeps every shard it had unless it has more than ⌈A/R⌉; freed shards (those of
 *   departed members, or a member's excess) go to the least loaded, and a joiner takes only from the most loaded;
 * - where there is a choice, the shard goes to the member that wants it most (rendezvous weight), so members
 *   starting at the same time agree without talking.
 */
export function rebalance(
  previous: Assignment | undefined,
  live: readonly string[],
  shards: number,
  reserved: ReadonlySet<string> = new Set(),
): Assignment {
  const prev = previous?.shards === shards ? previous.owners : {};
  const weight = weights(shards);
  const owners: Record<string, number[]> = {};
  const taken = new Set<number>();
  const keep = (id: string) => {
    owners[id] = [];
    for (const shard of prev[id] ?? []) {
      if (Number.isInteger(shard) && shard >= 0 && shard < shards && !taken.has(shard)) {
        taken.add(shard);
        owners[id].push(shard);
      }
    }
  };
  const members = [...new Set(live)].sort();
  const isLive = new Set(members);
  for (const id of [...reserved].sort()) if (!isLive.has(id) && prev[id]) keep(id);
  for (const id of members) keep(id);
  if (members.length === 0) return sorted(shards, owners);

  const available = shards - [...reserved].reduce((n, id) => n + (isLive.has(id) ? 0 : (owners[id]?.length ?? 0)), 0);
  const ceil = Math.ceil(available / members.length);
  // Excess over the ceiling goes back to the pool: the shards the member wants least.
  const pool: number[] = [];
  for (const id of members) {
    const mine = owners[id];
    if (mine.length <= ceil) continue;
    mine.sort((a, b) => weight(b, id) - weight(a, id) || a - b);
    pool.push(...mine.splice(ceil));
  }
  for (let shard = 0; shard < shards; shard++) if (!taken.has(shard)) pool.push(shard);
  pool.sort((a, b) => a - b);
  for (const shard of pool) {
    const to = pick(members, (a, b) => owners[a].length - owners[b].length || weight(shard, b) - weight(shard, a) || cmp(a, b));
    owners[to].push(shard);
  }
  // A joiner starts below the floor: move to the least loaded from the most loaded, the shard it wants most.
  for (;;) {
    const to = pick(members, (a, b) => owners[a].length - owners[b].length || cmp(a, b));
    const from = pick(members, (a, b) => owners[b].length - owners[a].length || cmp(a, b));
    if (owners[from].length - owners[to].length <= 1) break;
    const mine = owners[from];
    let best = 0;
    for (let i = 1; i < mine.length; i++) {
      const w = weight(mine[i], to) - weight(mine[best], to);
      if (w > 0 || (w === 0 && mine[i] < mine[best])) best = i;
    }
    owners[to].push(mine.splice(best, 1)[0]);
  }
  return sorted(shards, owners);
}

/** Whether two assignments say the same (so no write is needed). */
export function sameAssignment(a: Assignment | undefined, b: Assignment): boolean {
  if (!a || a.shards !== b.shards) return false;
  const ids = Object.keys(b.owners);
  if (Object.keys(a.owners).length !== ids.length) return false;
  const leases = Object.entries(b.leases ?? {});
  if (Object.keys(a.leases ?? {}).length !== leases.length || leases.some(([id, hex]) => a.leases?.[id] !== hex)) return false;
  return ids.every((id) => {
    const x = a.owners[id];
    const y = b.owners[id];
    return x !== undefined && x.length === y.length && x.every((shard, i) => shard === y[i]);
  });
}

/** Parses a stored record; undefined when it is not one (then it is replaced). */
export function parseAssignment(text: string): Assignment | undefined {
  try {
    const value = JSON.parse(text) as Assignment;
    if (!Number.isInteger(value?.shards) || typeof value.owners !== 'object' || value.owners === null) return undefined;
    for (const list of Object.values(value.owners)) if (!Array.isArray(list)) return undefined;
    return value;
  } catch {
    return undefined;
  }
}

/**
 * Rendezvous weights, each computed when first looked up and kept for the call (a join's moves look each up many
 * times). Not a whole row per member: a departed member's shards, given out among 100 members at the floor, looked
 * up all 1,024 weights of each, 18 ms of CPU on every replica at every change.
 */
function weights(shards: number): (shard: number, member: string) => number {
  const cache = new Map<string, { row: Uint32Array; known: Uint8Array }>();
  return (shard, member) => {
    let entry = cache.get(member);
    if (!entry) {
      entry = { row: new Uint32Array(shards), known: new Uint8Array(shards) };
      cache.set(member, entry);
    }
    if (entry.known[shard] === 0) {
      entry.row[shard] = rendezvousWeight(shard, member);
      entry.known[shard] = 1;
    }
    return entry.row[shard];
  };
}

function pick<T>(items: readonly T[], order: (a: T, b: T) => number): T {
  let best = items[0];
  for (const item of items) if (order(item, best) < 0) best = item;
  return best;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sorted(shards: number, owners: Record<string, number[]>): Assignment {
  const out: Record<string, number[]> = {};
  for (const id of Object.keys(owners).sort()) out[id] = owners[id].sort((a, b) => a - b);
  return { shards, owners: out };
}
