import type { INestApplicationContext } from '@nestjs/common';
import { LeaderElectionService, LockService, SemaphoreService } from 'nestjs-etcd-lock';
import { grpcCounts } from '../../test/harness/etcd.js';
import { now, startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt } from '../case.js';
import { eventsSent, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';
import { percentile } from '../stats.js';
import { scaleChart } from '../svg.js';

/** What one contended name costs per hand-over, at P processes each waiting on it. */
export interface ContentionRound {
  readonly kind: 'lock' | 'semaphore-5' | 'election';
  readonly processes: number;
  readonly handovers: number;
  /** Events etcd sent to watchers, per hand-over: each wakes the process that watches. */
  readonly eventsPerHandover: number;
  /** Watch responses etcd sent, per hand-over: events, and the answers to watch creations and cancels. */
  readonly watchMessagesPerHandover: number;
  /** Requests sent by the callers (keepalives left out), per hand-over. */
  readonly requestsPerHandover: number;
  readonly handoverP50Ms: number;
  readonly handoverP99Ms: number;
  /** What etcd received per hand-over, by method (keepalives left out). */
  readonly perHandover: Record<string, number>;
}

/** Counts by method divided by `n`, keepalives left out, to two decimals. */
function perOperation(counts: Record<string, number>, n: number): Record<string, number> {
  const { LeaseKeepAlive: _, ...calls } = counts;
  return Object.fromEntries(Object.entries(calls).map(([method, count]) => [method, Math.round((count / n) * 100) / 100]));
}

/** What etcd has counted so far that a round reads before and after it. */
interface Counters {
  readonly events: number;
  readonly watchMessages: number;
  readonly requests: Map<string, number>;
}

async function counters(endpoints: readonly string[]): Promise<Counters> {
  const [events, watchMessages, requests] = await Promise.all([
    eventsSent(endpoints),
    watchMessagesSent(endpoints),
    requestsByMethod(endpoints),
  ]);
  return { events, watchMessages, requests };
}

/** A round's figures from the counters around it and its hand-over times. */
function roundOf(
  kind: ContentionRound['kind'],
  processes: number,
  handovers: number,
  before: Counters,
  after: Counters,
  times: number[],
): ContentionRound {
  const requests = received(before.requests, after.requests);
  const sorted = [...times].sort((a, b) => a - b);
  return {
    kind,
    processes,
    handovers,
    eventsPerHandover: (after.events - before.events) / handovers,
    watchMessagesPerHandover: (after.watchMessages - before.watchMessages) / handovers,
    requestsPerHandover: sentByCalls(requests) / handovers,
    perHandover: perOperation(requests, handovers),
    handoverP50Ms: percentile(sorted, 50),
    handoverP99Ms: percentile(sorted, 99),
  };
}

/** Watch response messages etcd has sent, over all its members. */
async function watchMessagesSent(endpoints: readonly string[]): Promise<number> {
  return (await grpcCounts(endpoints, 'grpc_server_msg_sent_total')).get('Watch') ?? 0;
}

/**
 * One name contended by P app instances (each its own etcd client and session, as P replicas would be), each with
 * one caller that takes the name, lets it go, and queues again, for `handovers` hand-overs. A hand-over's time runs
 * from the release's start to the next holder's acquire resolving; a semaphore of 5 counts each acquire after the
 * first 5 against the latest release before it.
 */
async function round(ctx: BenchContext, kind: ContentionRound['kind'], processes: number, handovers: number): Promise<ContentionRound> {
  const apps: INestApplicationContext[] = [];
  for (let i = 0; i < processes; i++) apps.push(await startApp(ctx.endpoints, { identity: `p${i}`, ttl: 30 }));
  const name = `contended-${kind}-${processes}`;
  const events: Array<{ at: number; what: 'acquired' | 'releasing' }> = [];
  try {
    if (kind === 'election') return await electionRound(ctx, apps, name, handovers);
    let done = 0;
    let stop = false;
    const take = async (app: INestApplicationContext) => {
      if (kind === 'lock') return app.get(LockService).acquire(name, { timeout: 120_000 });
      return app.get(SemaphoreService).acquire(name, { limit: 5, timeout: 120_000 });
    };
    // Every caller queues once before the measurement starts, so all P wait from the first hand-over.
    const loops = apps.map(async (app) => {
      while (!stop) {
        const held = await take(app);
        events.push({ at: now(), what: 'acquired' });
        if (++done >= handovers + processes) stop = true;
        await new Promise((resolve) => setImmediate(resolve));
        events.push({ at: now(), what: 'releasing' });
        await held.release();
      }
    });
    const before = await counters(ctx.endpoints);
    await Promise.all(loops);
    const after = await counters(ctx.endpoints);
    const times: number[] = [];
    let lastRelease: number | undefined;
    let acquiredSoFar = 0;
    for (const e of events) {
      if (e.what === 'releasing') lastRelease = e.at;
      else if (++acquiredSoFar > (kind === 'lock' ? 1 : 5) && lastRelease !== undefined) times.push(e.at - lastRelease);
    }
    return roundOf(kind, processes, done, before, after, times);
  } finally {
    await Promise.all(apps.map((app) => app.close()));
  }
}

/** P candidates in one election; the leader resigns and campaigns again, `handovers` times. */
async function electionRound(
  ctx: BenchContext,
  apps: INestApplicationContext[],
  name: string,
  handovers: number,
): Promise<ContentionRound> {
  const elections = apps.map((app) => app.get(LeaderElectionService));
  // Each candidate's campaign, resolving with its index and the time it came to lead (never, once the app closes).
  const campaign = (j: number) =>
    elections[j].campaign(name).then(
      () => ({ j, at: now() }),
      () => new Promise<never>(() => {}),
    );
  const pending = new Map(elections.map((_, j) => [j, campaign(j)]));
  const race = () => Promise.race(pending.values());
  let leader = (await race()).j;
  pending.delete(leader);
  const before = await counters(ctx.endpoints);
  const times: number[] = [];
  for (let i = 0; i < handovers; i++) {
    const started = now();
    await elections[leader].resign(name);
    const next = await race();
    times.push(next.at - started);
    pending.delete(next.j);
    pending.set(leader, campaign(leader));
    leader = next.j;
  }
  const after = await counters(ctx.endpoints);
  await Promise.all(elections.map((e) => e.resign(name)));
  return roundOf('election', apps.length, handovers, before, after, times);
}

/**
 * Scale case 1: a contended name at P = 2, 10, 50, 100 processes. The goal: watch messages (wake-ups) per
 * hand-over independent of P, and the hand-over p50 at P = 100 within 2x of P = 2.
 */
export async function contentionScale(
  ctx: BenchContext,
  counts = ctx.quick ? [2, 10] : [2, 10, 50, 100],
  kinds: ReadonlyArray<ContentionRound['kind']> = ['lock', 'semaphore-5', 'election'],
): Promise<CaseResult> {
  const rounds: ContentionRound[] = [];
  for (const kind of kinds) {
    for (const processes of counts) {
      if (kind === 'semaphore-5' && processes <= 5) continue;
      // Three hand-overs per process at least, so that each has queued again behind the others.
      rounds.push(await round(ctx, kind, processes, ctx.quick ? 20 : Math.max(300, 3 * processes)));
    }
  }
  const of = (kind: ContentionRound['kind']) => rounds.filter((r) => r.kind === kind);
  const ratio = (list: ContentionRound[], f: (r: ContentionRound) => number) => f(list[list.length - 1]) / f(list[0]);
  const measured = kinds.filter((k) => of(k).length > 0);
  const wakeGrowth = Math.max(...measured.map((k) => ratio(of(k), (r) => r.eventsPerHandover)));
  const latencyGrowth = Math.max(...measured.map((k) => ratio(of(k), (r) => r.handoverP50Ms)));
  return {
    id: 'contention-scale',
    title: `One contended name, ${counts.join('/')} processes waiting (lock, semaphore of 5, election)`,
    target: 'events (wake-ups) per hand-over flat in P (within 1.5x); hand-over p50 at the largest P within 2x of the smallest, each kind',
    met: wakeGrowth <= 1.5 && latencyGrowth <= 2,
    result: rounds
      .map(
        (r) =>
          `${r.kind} P=${r.processes}: ${r.eventsPerHandover.toFixed(1)} events, ${r.requestsPerHandover.toFixed(1)} req, ${fmt(r.handoverP50Ms)}`,
      )
      .join('; '),
    metrics: { rounds, wakeGrowth, latencyGrowth },
    charts: {
      'contention-scale.svg': scaleChart(
        measured.flatMap((k) => [
          { label: `${k}: events`, points: of(k).map((r) => [r.processes, r.eventsPerHandover] as const) },
          { label: `${k}: p50 ms`, points: of(k).map((r) => [r.processes, r.handoverP50Ms] as const) },
        ]),
        'One contended name: cost of a hand-over against the processes waiting',
        'processes waiting (P)',
        'events per hand-over; hand-over p50 in ms',
      ),
    },
  };
}
