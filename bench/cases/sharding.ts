import type { INestApplicationContext } from '@nestjs/common';
import { ShardingService } from 'nestjs-etcd-lock';
import { combineLatest, filter, firstValueFrom } from 'rxjs';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt } from '../case.js';
import { quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';

const SHARDS = 64;

/** Resolves with every app's shards once they cover the group exactly once and are balanced. */
function settled(apps: INestApplicationContext[]): Promise<number[][]> {
  const floor = Math.floor(SHARDS / apps.length);
  return firstValueFrom(
    combineLatest(apps.map((app) => app.get(ShardingService).owned('bench-shards'))).pipe(
      filter((owned) => {
        const all = new Set(owned.flat());
        return all.size === SHARDS && owned.flat().length === SHARDS && owned.every((list) => list.length - floor <= 1 && list.length >= floor);
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
    rows.push({ replicas: r, joinMs, startupMs, moved, shuffled, joinRequestsPerReplica: joinRequests / (r + 1), leaveMs, leaveRequestsPerReplica: leaveRequests / r });
  }
  const line = rows
    .map((x) =>
      `R=${x.replicas}: join → balanced ${fmt(x.joinMs)} (${x.moved} shards moved to it, ${x.shuffled} between others, ` +
      `${x.joinRequestsPerReplica.toFixed(1)} requests per replica); clean stop → all owned ${fmt(x.leaveMs)} ` +
      `(${x.leaveRequestsPerReplica.toFixed(1)} requests per replica)`,
    )
    .join('; ');
  const ideal = (x: Record<string, number>) => Math.floor(SHARDS / (x.replicas + 1));
  return {
    id: 'sharding',
    title: `sharding: 64 shards, a replica joins then one stops cleanly (R replicas in one process)`,
    target: 'a joiner takes only ⌊S/R⌋–⌈S/R⌉ shards, none move between others; clean-stop handover ≤ 100 ms',
    met: rows.every((x) => x.shuffled === 0 && x.moved >= ideal(x) && x.moved <= ideal(x) + 1 && x.leaveMs <= 100),
    result: line,
    metrics: { rows },
  };
}
