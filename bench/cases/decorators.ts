import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { LeaderElectionService, LeaderOnly, LockService, Sharded, ShardingService, type ShardSet, Singleton } from 'nestjs-etcd-lock';
import { filter, firstValueFrom } from 'rxjs';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';

/** A sharded job whose run returns its ShardSet (for the cost of `owns()`). */
@Injectable()
export class ShardedJobs {
  @Sharded('bench-owns', { shards: 64 })
  run(): ShardSet | undefined {
    return ShardingService.current();
  }
}

@Injectable()
export class GuardedJobs {
  @LeaderOnly('bench-decorators')
  leaderOnly(): number {
    return 1;
  }

  /** On the leader: runs, and reads its term (what a fenced leader-only job does first). */
  @LeaderOnly('bench-decorators')
  withTerm(): bigint | undefined {
    return LeaderElectionService.current()?.fencingToken;
  }

  /** The same on the leader of another election (for the telemetry case). */
  @LeaderOnly('bench-otel')
  withTermIn(_election: string): bigint | undefined {
    return LeaderElectionService.current()?.fencingToken;
  }

  plain(): number {
    return 1;
  }

  @Singleton('bench-singleton')
  async singleton(): Promise<number> {
    return 1;
  }
}

/** Runs `fn` `n` times; returns ns per call and the etcd requests sent meanwhile. */
async function perCall(ctx: BenchContext, n: number, fn: () => unknown): Promise<{ ns: number; requests: number }> {
  await quiet(ctx.endpoints); // e.g. the watch a lock just taken creates on its name
  const before = await requestsByMethod(ctx.endpoints);
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const ns = Number(process.hrtime.bigint() - started) / n;
  return { ns, requests: sentByCalls(received(before, await requestsByMethod(ctx.endpoints))) };
}

function perCallSync(n: number, fn: () => unknown): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - started) / n;
}

/** `@LeaderOnly` on a follower and `@Singleton` skipping: what a call costs when it does not run. */
export async function decoratorOverhead(ctx: BenchContext): Promise<CaseResult> {
  const leaderApp = await startApp(ctx.endpoints, { identity: 'deco-leader' }, [GuardedJobs]);
  await firstValueFrom(leaderApp.get(LeaderElectionService).changes('bench-decorators').pipe(filter(Boolean)));
  const followerApp: INestApplicationContext = await startApp(ctx.endpoints, { identity: 'deco-follower' }, [GuardedJobs]);
  const jobs = followerApp.get(GuardedJobs);
  try {
    const n = scaled(ctx, 1_000_000, 100_000);
    perCallSync(n, () => jobs.leaderOnly()); // warm-up
    await quiet(ctx.endpoints);
    const before = await requestsByMethod(ctx.endpoints);
    const leaderOnlyNs = perCallSync(n, () => jobs.leaderOnly());
    const leaderOnlyRequests = sentByCalls(received(before, await requestsByMethod(ctx.endpoints)));
    const plainNs = perCallSync(n, () => jobs.plain());
    if (jobs.leaderOnly() !== undefined) throw new Error('the follower ran a leader-only method');

    // On the leader: a run that reads its term (token and signal) costs no request either.
    const leaderJobs = leaderApp.get(GuardedJobs);
    if (typeof leaderJobs.withTerm() !== 'bigint') throw new Error('the leader ran without its term');
    await quiet(ctx.endpoints);
    const beforeLeader = await requestsByMethod(ctx.endpoints);
    const withTermNs = perCallSync(n, () => leaderJobs.withTerm());
    const withTermRequests = sentByCalls(received(beforeLeader, await requestsByMethod(ctx.endpoints)));

    // Held by another instance: one request (tryAcquire) tells us it is taken.
    const heldElsewhere = await leaderApp.get(LockService).acquire('bench-singleton');
    const remote = await perCall(ctx, scaled(ctx, 500, 50), () => jobs.singleton());
    await heldElsewhere.release();
    // Held in this instance: the local queue answers, no request.
    const heldHere = await followerApp.get(LockService).acquire('bench-singleton');
    const local = await perCall(ctx, scaled(ctx, 100_000, 10_000), () => jobs.singleton());
    await heldHere.release();

    return {
      id: 'decorators',
      title: '@LeaderOnly on a follower, @Singleton skip',
      target: 'no etcd request for @LeaderOnly; overhead per call in ns',
      met: leaderOnlyRequests === 0 && withTermRequests === 0 && local.requests === 0,
      result:
        `@LeaderOnly skip ${leaderOnlyNs.toFixed(0)} ns/call (plain method ${plainNs.toFixed(1)} ns), ${leaderOnlyRequests} requests ` +
        `in ${n.toLocaleString('en')} calls; on the leader, a run reading its term ${withTermNs.toFixed(0)} ns/call, ` +
        `${withTermRequests} requests; @Singleton skip: held here ${local.ns.toFixed(0)} ns, ${local.requests} req; ` +
        `held elsewhere ${fmt(remote.ns / 1e6)}, ${(remote.requests / scaled(ctx, 500, 50)).toFixed(2)} req/call`,
      metrics: {
        leaderOnlyNsPerCall: leaderOnlyNs,
        plainNsPerCall: plainNs,
        leaderOnlyRequests,
        leaderRunWithTermNsPerCall: withTermNs,
        leaderRunWithTermRequests: withTermRequests,
        singletonHeldHereNsPerCall: local.ns,
        singletonHeldHereRequests: local.requests,
        singletonHeldElsewhereNsPerCall: remote.ns,
        singletonHeldElsewhereRequestsPerCall: remote.requests / scaled(ctx, 500, 50),
      },
    };
  } finally {
    await followerApp.close();
    await leaderApp.close();
  }
}
