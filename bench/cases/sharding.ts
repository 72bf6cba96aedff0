import type { INestApplicationContext } from '@nestjs/common';
import { ShardingService, type ShardSet } from 'nestjs-etcd-lock';
import { NodeProcess } from '../../test/harness/processes.js';
import { combineLatest, filter, firstValueFrom } from 'rxjs';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { ShardedJobs } from './decorators.js';
import { quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';

const SHARDS = 64;

const CRASH_TTL = 2;

/** Resolves with every app's shards once they cover the group exactly once and are balanced. */
function settled(apps: INestApplicationContext[], group = 'bench-shards'): Promise<number[][]> {
  const floor = Math.floor(SHARDS / apps.length);
  return firstValueFrom(
    combineLatest(apps.map((app) => app.get(ShardingService).owned(group))).pipe(
      filter((owned) => {
        const all = new Set(owned.flat());
        return (
          all.size === SHARDS && owned.flat().length === SHARDS && owned.every((list) => list.length - floor <= 1 && list.length >= floor)
        );
      }),
    ),
  );
}

/**
 * Sharding as the fleet grows: R replicas (Nest apps in this process) share 64 shards; one more joins, then one
 * leaves cleanly. For each: time until every shard has its new owner and the shares are balanced, how many shards
 * moved, and what etcd received per replica for it.
 */
export async function sharding(ctx: BenchContext): Promise<CaseResult> {
  const sizes = ctx.quick ? [2, 4] : [2, 4, 8];
  const rows: Array<Record<string, number>> = [];
  for (const r of sizes) {
    const apps: INestApplicationContext[] = [];
    for (let i = 0; i < r; i++) {
      const app = await startApp(ctx.endpoints, { identity: `shard-${r}-${i}` });
      await app.get(ShardingService).join('bench-shards', { shards: SHARDS });
      apps.push(app);
    }
    const before = await settled(apps);
    await quiet(ctx.endpoints);

    let counts = await requestsByMethod(ctx.endpoints);
    let t0 = performance.now();
    const joiner = await startApp(ctx.endpoints, { identity: `shard-${r}-new` });
    const joinStarted = performance.now();
    await joiner.get(ShardingService).join('bench-shards', { shards: SHARDS });
    apps.push(joiner);
    const afterJoin = await settled(apps);
    const joinMs = performance.now() - joinStarted;
    const startupMs = joinStarted - t0;
    const joinRequests = sentByCalls(received(counts, await requestsByMethod(ctx.endpoints)));
    const moved = afterJoin[r].length;
    const shuffled = before.reduce((n, list, i) => n + afterJoin[i].filter((s) => !list.includes(s)).length, 0);
    await quiet(ctx.endpoints);

    counts = await requestsByMethod(ctx.endpoints);
    const leaving = apps.shift() as INestApplicationContext;
    t0 = performance.now();
    const handed = settled(apps);
    await leaving.close();
    await handed;
    const leaveMs = performance.now() - t0;
    const leaveRequests = sentByCalls(received(counts, await requestsByMethod(ctx.endpoints)));

    await Promise.all(apps.map((app) => app.close()));
    rows.push({
      replicas: r,
      joinMs,
      startupMs,
      moved,
      shuffled,
      joinRequestsPerReplica: joinRequests / (r + 1),
      leaveMs,
      leaveRequestsPerReplica: leaveRequests / r,
    });
  }
  const crash = await crashHandover(ctx);
  const ownsNs = ownsCost(ctx, await startApp(ctx.endpoints, { identity: 'shard-owns' }, [ShardedJobs]));
  const line = rows
    .map(
      (x) =>
        `R=${x.replicas}: join → balanced ${fmt(x.joinMs)} (${x.moved} shards moved to it, ${x.shuffled} between others, ` +
        `${x.joinRequestsPerReplica.toFixed(1)} requests per replica); clean stop → all owned ${fmt(x.leaveMs)} ` +
        `(${x.leaveRequestsPerReplica.toFixed(1)} requests per replica)`,
    )
    .join('; ')
    .concat(`; crash (SIGKILL of 1 of 3, TTL ${CRASH_TTL} s) → all owned by the other 2 in ${crash.map((ms) => fmt(ms)).join(', ')}`)
    .concat(`; owns(key) in a run ${(await ownsNs).toFixed(0)} ns`);
  const ideal = (x: Record<string, number>) => Math.floor(SHARDS / (x.replicas + 1));
  return {
    id: 'sharding',
    title: `sharding: 64 shards, a replica joins then one stops cleanly (R replicas in one process)`,
    target: `a joiner takes only ⌊S/R⌋–⌈S/R⌉ shards, none move between others; clean-stop handover ≤ 100 ms; crash ≤ TTL + 1 s`,
    met:
      rows.every((x) => x.shuffled === 0 && x.moved >= ideal(x) && x.moved <= ideal(x) + 1 && x.leaveMs <= 100) &&
      crash.every((ms) => ms <= (CRASH_TTL + 1) * 1000),
    result: line,
    metrics: { rows, crashMs: crash, ownsNs: await ownsNs },
  };
}

/** A replica process owning a third of the shards is SIGKILLed: time until the two in this process own them all. */
async function crashHandover(ctx: BenchContext): Promise<number[]> {
  const samples: number[] = [];
  for (let run = 0; run < (ctx.quick ? 1 : 3); run++) {
    const apps = [
      await startApp(ctx.endpoints, { identity: `crash-a-${run}` }),
      await startApp(ctx.endpoints, { identity: `crash-b-${run}` }),
    ];
    const victim = new NodeProcess('build/bench/worker.js', [
      'shard',
      ctx.endpoints.join(','),
      `crash-victim-${run}`,
      String(CRASH_TTL),
      String(SHARDS),
    ]);
    for (const app of apps) await app.get(ShardingService).join('bench-crash-shards', { shards: SHARDS });
    // The victim holds its third before it dies.
    await victim.line(
      (l) => l.includes('"event":"shards"') && (JSON.parse(l) as { shards: number[] }).shards.length >= Math.floor(SHARDS / 3),
    );
    const killedAt = performance.now();
    victim.kill('SIGKILL');
    await settled(apps, 'bench-crash-shards');
    samples.push(performance.now() - killedAt);
    await victim.exited;
    await Promise.all(apps.map((app) => app.close()));
  }
  return samples;
}

/** ns per `owns(key)` on a run's ShardSet (one replica owning every shard), over distinct keys. */
async function ownsCost(ctx: BenchContext, app: INestApplicationContext): Promise<number> {
  try {
    await firstValueFrom(
      app
        .get(ShardingService)
        .owned('bench-owns')
        .pipe(filter((s) => s.length === SHARDS)),
    );
    const set = app.get(ShardedJobs).run() as ShardSet;
    const keys = Array.from({ length: 10_000 }, (_, i) => `tenant:${i}`);
    const n = scaled(ctx, 2_000_000, 100_000);
    let owned = 0;
    for (let i = 0; i < 100_000; i++) if (set.owns(keys[i % keys.length])) owned++; // warm-up
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (set.owns(keys[i % keys.length])) owned++;
    const ns = Number(process.hrtime.bigint() - started) / n;
    if (owned === 0) throw new Error('owns() found no owned key');
    return ns;
  } finally {
    await app.close();
  }
}
