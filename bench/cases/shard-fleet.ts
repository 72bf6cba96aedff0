import type { INestApplicationContext } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { LeaderElectionService, ShardingService } from 'nestjs-etcd-lock';
import { combineLatest, filter, firstValueFrom, type Subscription } from 'rxjs';
import { startApp } from '../app.js';
import type { BenchContext, CaseResult } from '../case.js';
import { eventsSent, quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';
import { percentile } from '../stats.js';
import { scaleChart } from '../svg.js';
import { CallTally, FIRE_MS, FleetJob, FleetRuns, nextFireAfter } from './fleet-job.js';

const SHARDS = 1024;
const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const GROUP = 'fleet';
const PREFIX = 'shardfleet/';
const RECORD = Buffer.from(`${PREFIX}assignment/${GROUP}/current`);
const JOB_ROOT = Buffer.from(`${PREFIX}job/`);
/** How long a fire time may take to run once it has come (a bound on the wait, not a figure). */
const RUN_WITHIN_MS = 5000;
/** Fire times the job's ticks are counted over after the roll, at rest. */
const REST_FIRES = 3;

/** A replica: a Nest app in this process with its own etcd client, campaigning, in the shard group, with the job. */
async function replica(ctx: BenchContext, identity: string, tally: CallTally, runs: FleetRuns): Promise<INestApplicationContext> {
  const app = await startApp(
    ctx.endpoints,
    { identity, prefix: PREFIX, etcd: { defaultCallOptions: tally.factory } },
    [FleetJob, { provide: FleetRuns, useValue: runs }],
    [ScheduleModule.forRoot()],
  );
  app.get(LeaderElectionService).changes('fleet-leader').subscribe();
  await app.get(ShardingService).join(GROUP, { shards: SHARDS });
  return app;
}

/** Resolves once the apps own every shard exactly once, each ⌊S/R⌋ or ⌈S/R⌉. */
function balanced(apps: INestApplicationContext[]): Promise<unknown> {
  const floor = Math.floor(SHARDS / apps.length);
  return firstValueFrom(
    combineLatest(apps.map((app) => app.get(ShardingService).owned(GROUP))).pipe(
      filter((owned) => {
        const all = owned.flat();
        return all.length === SHARDS && new Set(all).size === SHARDS && owned.every((l) => l.length === floor || l.length === floor + 1);
      }),
    ),
  );
}

/** Counts every shard an app gains (one move each), from the app's next change on. */
function countGains(app: INestApplicationContext, moves: { count: number }): Subscription {
  let before: number[] | undefined;
  return app
    .get(ShardingService)
    .owned(GROUP)
    .subscribe((now) => {
      if (before) moves.count += now.filter((s) => !before?.includes(s)).length;
      before = now;
    });
}

/**
 * Scale case 2, a fleet starting and rolling: R replicas (apps in this process, each with its own etcd client),
 * one group of 1,024 shards, one election and a scheduled job every second (each replica's own timer ticks it; its
 * calls are counted apart and left out of the steps' counts, and every fire time must run exactly once). Cold
 * start: every replica joins at once; time until balanced and requests per replica. Then a rolling restart, one
 * replica at a time (a clean stop, then a new app with the same identity): shard moves per step (goal: at most the
 * restarted replica's shards, out and back), requests per replica per step, record writes and the compares among
 * them that failed (goal: not growing with R), time to balanced.
 */
export async function shardFleet(ctx: BenchContext): Promise<CaseResult> {
  const sizes = ctx.quick ? [10] : [10, 50, 100];
  const rounds = [];
  for (const r of sizes) {
    const tally = new CallTally(RECORD, JOB_ROOT);
    const runs = new FleetRuns();
    const recordPuts = { count: 0 };
    const watcher = await ctx.client.watch().key(RECORD.toString()).create();
    watcher.on('put', () => recordPuts.count++);
    let apps: INestApplicationContext[] = [];
    try {
      let counts = await requestsByMethod(ctx.endpoints);
      let jobCalls = tally.jobCalls;
      let t0 = performance.now();
      apps = await Promise.all(Array.from({ length: r }, (_, i) => replica(ctx, `fleet-${i}`, tally, runs)));
      await balanced(apps);
      const coldMs = performance.now() - t0;
      const firstFire = nextFireAfter(Date.now());
      const coldRequests = sentByCalls(received(counts, await requestsByMethod(ctx.endpoints))) - (tally.jobCalls - jobCalls);
      const cold = { writes: tally.recordWrites, conflicts: tally.recordWrites - recordPuts.count };
      await quiet(ctx.endpoints, () => tally.jobCalls);

      const steps: Array<{
        moves: number;
        requestsPerReplica: number;
        writes: number;
        conflicts: number;
        leaveMs: number;
        rejoinMs: number;
      }> = [];
      for (let i = 0; i < r; i++) {
        const moves = { count: 0 };
        const subs = apps.map((app) => countGains(app, moves));
        const [sentBefore, putsBefore] = [tally.recordWrites, recordPuts.count];
        counts = await requestsByMethod(ctx.endpoints);
        jobCalls = tally.jobCalls;
        t0 = performance.now();
        const [leaving] = apps.splice(i, 1);
        const handed = balanced(apps);
        await leaving.close();
        await handed;
        const leaveMs = performance.now() - t0;
        t0 = performance.now();
        const back = await replica(ctx, `fleet-${i}`, tally, runs);
        subs.push(countGains(back, moves));
        apps.splice(i, 0, back);
        await balanced(apps);
        const rejoinMs = performance.now() - t0;
        for (const sub of subs) sub.unsubscribe();
        const stepWrites = tally.recordWrites - sentBefore;
        const stepRequests = sentByCalls(received(counts, await requestsByMethod(ctx.endpoints))) - (tally.jobCalls - jobCalls);
        steps.push({
          // The new app's first list counts as gains too: its subscription starts empty.
          moves: moves.count,
          requestsPerReplica: stepRequests / r,
          writes: stepWrites,
          conflicts: stepWrites - (recordPuts.count - putsBefore),
          leaveMs,
          rejoinMs,
        });
      }
      // At rest after the roll: what the job's ticks cost, over REST_FIRES fire times with no restart.
      const restFire = nextFireAfter(Date.now());
      await runs.ran(restFire, RUN_WITHIN_MS);
      const [restCalls, restEvents] = [tally.jobCalls, await eventsSent(ctx.endpoints)];
      const lastFire = restFire + REST_FIRES * FIRE_MS;
      await runs.ran(lastFire, RUN_WITHIN_MS + REST_FIRES * FIRE_MS);
      const perReplicaAndFire = (n: number) => n / r / REST_FIRES;
      // Every fire time from the first after the cold start to the last at rest ran once.
      const job = {
        ...runs.check(firstFire, lastFire),
        tickRequestsPerReplica: perReplicaAndFire(tally.jobCalls - restCalls),
        // Nothing else changes at rest (the shards and the election are settled): etcd's events are the job's.
        eventsPerReplica: perReplicaAndFire((await eventsSent(ctx.endpoints)) - restEvents),
      };
      const sum = (k: 'moves' | 'writes' | 'conflicts') => steps.reduce((n, s) => n + s[k], 0);
      rounds.push({
        replicas: r,
        coldMs,
        coldRequestsPerReplica: coldRequests / r,
        coldWrites: cold.writes,
        coldConflicts: cold.conflicts,
        movesPerStep: sum('moves') / r,
        maxMovesPerStep: Math.max(...steps.map((s) => s.moves)),
        ideal: 2 * Math.ceil(SHARDS / r),
        requestsPerReplicaPerStep: median(steps.map((s) => s.requestsPerReplica)),
        writesPerStep: sum('writes') / r,
        conflictsPerStep: sum('conflicts') / r,
        leaveMsP50: median(steps.map((s) => s.leaveMs)),
        rejoinMsP50: median(steps.map((s) => s.rejoinMs)),
        rejoinMsMax: Math.max(...steps.map((s) => s.rejoinMs)),
        job,
      });
    } finally {
      await Promise.all(apps.map((app) => app.close()));
      await watcher.cancel();
      await ctx.client.delete().prefix(JOB_ROOT.toString());
    }
  }
  return {
    id: 'shard-fleet',
    title: `A fleet of ${sizes.join('/')} replicas: ${SHARDS} shards, one election and a scheduled job, cold start and a rolling restart`,
    target:
      'a restart moves at most the restarted replica’s shards twice (out and back); record conflicts not growing with R; ' +
      'each fire time of the job runs once through the roll',
    met: rounds.every((x) => x.maxMovesPerStep <= x.ideal && x.conflictsPerStep === 0 && x.job.missed === 0 && x.job.doubled === 0),
    result: rounds
      .map(
        (x) =>
          `R=${x.replicas}: cold start balanced in ${(x.coldMs / 1000).toFixed(1)} s (${x.coldRequestsPerReplica.toFixed(0)} req/replica, ` +
          `${x.coldWrites} record writes, ${x.coldConflicts} conflicts); rolling: ${x.movesPerStep.toFixed(1)} moves/step ` +
          `(max ${x.maxMovesPerStep}, ideal ≤ ${x.ideal}), ${x.requestsPerReplicaPerStep.toFixed(1)} req/replica/step, ` +
          `${x.writesPerStep.toFixed(1)} writes and ${x.conflictsPerStep.toFixed(2)} conflicts/step, ` +
          `stop → balanced p50 ${x.leaveMsP50.toFixed(0)} ms, rejoin → balanced p50 ${x.rejoinMsP50.toFixed(0)} ms; ` +
          `job: ${x.job.fires} fire times, ${x.job.missed} missed, ${x.job.doubled} run twice, ${x.job.caughtUp} caught up, ` +
          `${x.job.tickRequestsPerReplica.toFixed(2)} req and ${x.job.eventsPerReplica.toFixed(2)} events per replica per fire time at rest`,
      )
      .join('; '),
    metrics: { shards: SHARDS, rounds },
    charts: {
      'shard-fleet.svg': scaleChart(
        [
          { label: 'moves per restart', points: rounds.map((x) => [x.replicas, x.movesPerStep]) },
          { label: 'ideal: 2⌈S/R⌉', points: rounds.map((x) => [x.replicas, x.ideal]) },
          { label: 'requests/replica/restart', points: rounds.map((x) => [x.replicas, x.requestsPerReplicaPerStep]) },
          { label: 'record writes/restart', points: rounds.map((x) => [x.replicas, x.writesPerStep]) },
          { label: 'cold start req/replica', points: rounds.map((x) => [x.replicas, x.coldRequestsPerReplica]) },
          { label: 'job requests/fire time, fleet', points: rounds.map((x) => [x.replicas, x.job.tickRequestsPerReplica * x.replicas]) },
        ],
        `A rolling restart, ${SHARDS} shards, a job every second (record conflicts: 0 at every R)`,
        'replicas R',
        'count',
      ),
    },
  };
}
