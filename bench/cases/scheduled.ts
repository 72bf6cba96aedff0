import { Injectable } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { ScheduledJob } from 'nestjs-etcd-lock';
import { ManualClock } from 'nestjs-etcd-lock/testing';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';
import { GuardedJobs } from './decorators.js';

/** A job whose run does nothing: what is measured is the library's claim, record and release. */
@Injectable()
export class BenchJobs {
  @ScheduledJob('bench-job', { history: 100, catchUp: 'none' })
  @Interval(1000)
  async tick(): Promise<number> {
    return 1;
  }
}

const T0 = Date.UTC(2030, 0, 1);

/**
 * A scheduled job's tick on two replicas: the one that claims the fire time (its run: claim, retention read,
 * fenced record, release) and the one that skips it (no request once its watch has seen the run's record, else one
 * refused claim), against a `@Singleton` run; and the keys a job leaves in etcd after many runs (bounded by
 * `history`). Both replicas run on manual clocks moved together, so each tick is a new fire time; the session TTL
 * is long enough that no keepalive is due meanwhile.
 */
export async function scheduledJobs(ctx: BenchContext): Promise<CaseResult> {
  const clocks = [new ManualClock(T0 + 100), new ManualClock(T0 + 100)];
  const [runner, other] = [
    await startApp(ctx.endpoints, { identity: 'job-runner', ttl: 600, clock: clocks[0] }, [BenchJobs, GuardedJobs]),
    await startApp(ctx.endpoints, { identity: 'job-other', ttl: 600, clock: clocks[1] }, [BenchJobs]),
  ];
  const advance = async () => Promise.all(clocks.map((c) => c.advance(1000)));
  try {
    const n = scaled(ctx, 500, 50);
    let runNs = 0;
    let skipNs = 0;
    const runCounts: Record<string, number> = {};
    const skipCounts: Record<string, number> = {};
    await quiet(ctx.endpoints);
    for (let i = 0; i < n; i++) {
      await advance();
      let before = await requestsByMethod(ctx.endpoints);
      let started = process.hrtime.bigint();
      if ((await runner.get(BenchJobs).tick()) !== 1) throw new Error('the runner did not run its fire time');
      runNs += Number(process.hrtime.bigint() - started);
      for (const [k, v] of Object.entries(received(before, await requestsByMethod(ctx.endpoints)))) runCounts[k] = (runCounts[k] ?? 0) + v;
      before = await requestsByMethod(ctx.endpoints);
      started = process.hrtime.bigint();
      if ((await other.get(BenchJobs).tick()) !== undefined) throw new Error('a fire time ran twice');
      skipNs += Number(process.hrtime.bigint() - started);
      for (const [k, v] of Object.entries(received(before, await requestsByMethod(ctx.endpoints))))
        skipCounts[k] = (skipCounts[k] ?? 0) + v;
    }
    const runRequests = sentByCalls(runCounts) / n;
    const skipRequests = sentByCalls(skipCounts) / n;

    // A @Singleton run, free: read, join, release.
    const jobs = runner.get(GuardedJobs);
    await quiet(ctx.endpoints);
    const beforeSingleton = await requestsByMethod(ctx.endpoints);
    const startedSingleton = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await jobs.singleton();
    const singletonNs = Number(process.hrtime.bigint() - startedSingleton) / n;
    const singletonRequests = sentByCalls(received(beforeSingleton, await requestsByMethod(ctx.endpoints))) / n;

    // Many runs: the keys left are the last `history` records, the floor and the schedule.
    const many = scaled(ctx, 10_000, 1_000) - n;
    const startedMany = process.hrtime.bigint();
    for (let i = 0; i < many; i++) {
      await clocks[0].advance(1000);
      await runner.get(BenchJobs).tick();
    }
    const manyMs = Number(process.hrtime.bigint() - startedMany) / 1e6;
    const keys = (await ctx.client.getAll().prefix('job/bench-job/').keys()).length;
    const runs = n + many;

    return {
      id: 'scheduled',
      title: 'A scheduled job: the run, the skip, the keys it keeps',
      target:
        'a skip costs at most 1 request (none once its watch has seen the record); a run 4; keys per job bounded by history (100 + 2)',
      met: skipRequests <= 1.05 && runRequests <= 4.05 && keys <= 102,
      result:
        `run ${fmt(runNs / n / 1e6)}, ${runRequests.toFixed(2)} req; skip on another replica ${fmt(skipNs / n / 1e6)}, ` +
        `${skipRequests.toFixed(2)} req; @Singleton run ${fmt(singletonNs / 1e6)}, ${singletonRequests.toFixed(2)} req; ` +
        `${keys} keys after ${runs.toLocaleString('en')} runs (${(manyMs / many).toFixed(2)} ms/run alone)`,
      metrics: {
        runMs: runNs / n / 1e6,
        runRequests,
        runRequestsByMethod: runCounts,
        skipMs: skipNs / n / 1e6,
        skipRequests,
        singletonRunMs: singletonNs / 1e6,
        singletonRunRequests: singletonRequests,
        runs,
        keysAfterRuns: keys,
      },
    };
  } finally {
    await Promise.all([runner.close(), other.close()]);
    await ctx.client.delete().prefix('job/');
  }
}
