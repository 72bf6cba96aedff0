import type { Contender, Inventory } from '../inventory/inventory.js';
import type { JobRun } from '../scheduling/job-record.js';
import type { JobStatus } from '../scheduling/job-status.js';

/** A key in a queue as the page shows it: who, on which lease, with which fencing token (a decimal string). */
export interface ViewParty {
  readonly value: string;
  readonly lease: string;
  readonly token: string;
}

/** One leadership term, as the page server saw it: `to` is null while it goes on. Times are epoch ms. */
export interface ViewTerm {
  readonly identity: string;
  readonly token: string;
  readonly from: number;
  readonly to: number | null;
}

/** A shard that changed owner, as the page server saw it (`null`: nobody held it). */
export interface ViewMove {
  readonly at: number;
  readonly shard: number;
  readonly from: string | null;
  readonly to: string | null;
}

/** A scheduled job: its state and its last runs, newest first. */
export interface ViewJob {
  readonly name: string;
  readonly schedule: string;
  readonly nextFireTime: number;
  readonly paused: boolean;
  readonly running: boolean;
  readonly runs: ReadonlyArray<{
    readonly fireTime: number;
    readonly kind: string;
    readonly attempt: number;
    readonly identity: string | null;
    readonly startedAt: number | null;
    readonly endedAt: number | null;
    readonly outcome: string;
    readonly error: string | null;
  }>;
}

/** Everything the page shows, sent whole after each change (JSON: bigints as decimal strings). */
export interface DashboardView {
  /** When the page server read it (epoch ms), and the etcd revision it was read at. */
  readonly at: number;
  readonly revision: string;
  readonly etcd: { readonly endpoints: readonly string[]; readonly prefix: string; readonly readMs: number };
  /** Whether the page may offer actions (the server was started with them enabled). */
  readonly actions: boolean;
  readonly locks: ReadonlyArray<{
    readonly name: string;
    readonly holder: ViewParty;
    readonly since: number;
    readonly waiters: ViewParty[];
  }>;
  readonly elections: ReadonlyArray<{
    readonly name: string;
    readonly leader: ViewParty | null;
    readonly candidates: ViewParty[];
    readonly terms: readonly ViewTerm[];
  }>;
  readonly shardGroups: ReadonlyArray<{
    readonly group: string;
    readonly shards: number;
    readonly members: readonly string[];
    /** Shard index to the identity holding its lock now. */
    readonly owners: Readonly<Record<number, string>>;
    readonly moves: readonly ViewMove[];
  }>;
  readonly semaphores: ReadonlyArray<{
    readonly name: string;
    readonly limit: number | null;
    readonly holders: ViewParty[];
    readonly waiters: ViewParty[];
  }>;
  readonly rwlocks: ReadonlyArray<{
    readonly name: string;
    readonly holders: Array<ViewParty & { readonly mode: string }>;
    readonly waiters: Array<ViewParty & { readonly mode: string }>;
  }>;
  readonly sessions: ReadonlyArray<{
    readonly lease: string;
    readonly ttl: number;
    readonly grantedTtl: number;
    readonly identities: readonly string[];
    readonly holds: readonly string[];
  }>;
  readonly jobs: readonly ViewJob[];
}

/** How much history the page server keeps: bounded whatever the churn (see the bench's `dashboard` case). */
export const HISTORY_LIMITS = { termsPerElection: 50, movesPerGroup: 100, names: 200 } as const;

const party = (c: Contender): ViewParty => ({ value: c.value, lease: c.lease, token: c.createRevision.toString() });
const epoch = (d: Date | undefined) => (d ? d.getTime() : null);

/**
 * Turns each inventory into the page's view, remembering what only time shows: since when a lock's holder holds it,
 * the terms of each election, the moves of each shard. Only what the page server saw: it starts empty.
 */
export class DashboardHistory {
  private readonly lockSince = new Map<string, number>();
  private readonly terms = new Map<string, ViewTerm[]>();
  private readonly owners = new Map<string, Map<number, string>>();
  private readonly moves = new Map<string, ViewMove[]>();

  view(
    inv: Inventory,
    jobs: ReadonlyArray<{ status: JobStatus; runs: readonly JobRun[] }>,
    at: number,
    context: { endpoints: readonly string[]; prefix: string; readMs: number; actions: boolean },
  ): DashboardView {
    const since = new Map<string, number>();
    for (const q of inv.locks) since.set(q.holder.key, this.lockSince.get(q.holder.key) ?? at);
    this.lockSince.clear();
    for (const [key, t] of since) this.lockSince.set(key, t);

    for (const q of inv.elections) this.noteLeader(q.name, q.holder, at);
    for (const [name, terms] of this.terms) {
      const last = terms.at(-1);
      if (last && last.to === null && !inv.elections.some((q) => q.name === name)) terms[terms.length - 1] = { ...last, to: at };
    }
    for (const g of inv.shardGroups) this.noteOwners(g.group, g.held, at);
    for (const group of this.owners.keys()) if (!inv.shardGroups.some((g) => g.group === group)) this.owners.delete(group);

    return {
      at,
      revision: inv.revision.toString(),
      etcd: { endpoints: context.endpoints, prefix: context.prefix, readMs: context.readMs },
      actions: context.actions,
      locks: inv.locks.map((q) => ({
        name: q.name,
        holder: party(q.holder),
        since: since.get(q.holder.key) ?? at,
        waiters: q.waiters.map(party),
      })),
      elections: [...new Set([...inv.elections.map((q) => q.name), ...this.terms.keys()])].sort().map((name) => {
        const q = inv.elections.find((e) => e.name === name);
        return { name, leader: q ? party(q.holder) : null, candidates: q ? q.waiters.map(party) : [], terms: this.terms.get(name) ?? [] };
      }),
      shardGroups: inv.shardGroups.map((g) => ({
        group: g.group,
        shards: g.shards ?? Math.max(0, ...[...g.held.keys()].map((i) => i + 1)),
        members: [...new Set([...g.members.map((m) => m.identity), ...[...g.held.values()].map((c) => c.value)])],
        owners: Object.fromEntries([...g.held].map(([i, c]) => [i, c.value])),
        moves: this.moves.get(g.group) ?? [],
      })),
      semaphores: inv.semaphores.map((s) => ({
        name: s.name,
        limit: s.limit ?? null,
        holders: s.holders.map(party),
        waiters: s.waiters.map(party),
      })),
      rwlocks: inv.rwlocks.map((rw) => ({
        name: rw.name,
        holders: rw.holders.map((c) => ({ ...party(c), mode: c.mode })),
        waiters: rw.waiters.map((c) => ({ ...party(c), mode: c.mode })),
      })),
      sessions: inv.sessions.map((s) => ({ ...s })),
      jobs: jobs.map(({ status, runs }) => ({
        name: status.name,
        schedule: status.schedule,
        nextFireTime: status.nextFireTime.getTime(),
        paused: status.paused,
        running: status.running,
        runs: runs.map((r) => ({
          fireTime: r.fireTime.getTime(),
          kind: r.kind,
          attempt: r.attempt,
          identity: r.identity ?? null,
          startedAt: epoch(r.startedAt),
          endedAt: epoch(r.endedAt),
          outcome: r.outcome,
          error: r.error ?? null,
        })),
      })),
    };
  }

  private noteLeader(name: string, leader: Contender, at: number): void {
    const terms = this.remember(this.terms, name);
    const last = terms.at(-1);
    const token = leader.createRevision.toString();
    if (last?.token === token && last.to === null) return;
    if (last && last.to === null) terms[terms.length - 1] = { ...last, to: at };
    terms.push({ identity: leader.value, token, from: at, to: null });
    if (terms.length > HISTORY_LIMITS.termsPerElection) terms.splice(0, terms.length - HISTORY_LIMITS.termsPerElection);
  }

  private noteOwners(group: string, held: ReadonlyMap<number, Contender>, at: number): void {
    const before = this.owners.get(group);
    const now = new Map([...held].map(([i, c]) => [i, c.value]));
    this.owners.set(group, now);
    if (!before) return;
    const moves = this.remember(this.moves, group);
    for (const shard of new Set([...before.keys(), ...now.keys()])) {
      const from = before.get(shard) ?? null;
      const to = now.get(shard) ?? null;
      if (from !== to) moves.push({ at, shard, from, to });
    }
    if (moves.length > HISTORY_LIMITS.movesPerGroup) moves.splice(0, moves.length - HISTORY_LIMITS.movesPerGroup);
  }

  /** The list kept for `name`, made the newest; the oldest names are forgotten beyond the limit. */
  private remember<T>(map: Map<string, T[]>, name: string): T[] {
    const list = map.get(name) ?? [];
    map.delete(name);
    map.set(name, list);
    while (map.size > HISTORY_LIMITS.names) {
      const oldest = map.keys().next().value as string;
      map.delete(oldest);
      this.owners.delete(oldest);
    }
    return list;
  }
}
