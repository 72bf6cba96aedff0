import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { INestApplicationContext } from '@nestjs/common';
import { LeaderElectionService, type Lock, LockService } from 'nestjs-etcd-lock';
import { etcdMetric } from '../../test/harness/etcd.js';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, scaled } from '../case.js';
import { received, requestsByMethod } from '../etcd-metrics.js';
import { processCpuMs } from './fan-out.js';
import { scaleChart } from '../svg.js';

/** etcd's resident memory in MiB, summed over members, from each member's own metric. */
async function etcdMemoryMiB(endpoints: readonly string[]): Promise<number> {
  let bytes = 0;
  for (const endpoint of endpoints) bytes += await etcdMetric(endpoint, 'process_resident_memory_bytes');
  return bytes / 2 ** 20;
}

/** A metric summed over members. */
async function sum(endpoints: readonly string[], name: string): Promise<number> {
  let total = 0;
  for (const endpoint of endpoints) total += await etcdMetric(endpoint, name);
  return total;
}

/**
 * A full collection: `gc` when the process runs with `--expose-gc`; else V8's flag set now and `gc` taken from a
 * fresh context (a run started without the flag, as `npm run test:scale` does, still measures the heap).
 */
const collect: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  })();

/** This process's heap in use after a full collection, in bytes. */
function heapAfterGc(): number {
  collect();
  return process.memoryUsage().heapUsed;
}

/**
 * Scale case 3, the idle cost of a fleet: R app instances (each its own etcd client and session), each holding 10
 * locks and campaigning in 3 elections, then left alone for a window. Measured: what etcd receives per idle
 * replica per minute (keepalives only is the goal), and etcd's CPU and memory with the fleet idle, against R.
 */
export async function idleFleet(ctx: BenchContext, etcdPids: number[]): Promise<CaseResult> {
  const sizes = ctx.quick ? [10] : [10, 50, 100];
  const windowMs = ctx.quick ? 3000 : 20_000;
  const rounds = [];
  for (const replicas of sizes) {
    const memoryBefore = await etcdMemoryMiB(ctx.endpoints);
    const apps: INestApplicationContext[] = [];
    const held: Lock[] = [];
    try {
      for (let i = 0; i < replicas; i++) apps.push(await startApp(ctx.endpoints, { identity: `idle-${i}`, prefix: 'fleet/' }));
      for (const [i, app] of apps.entries()) {
        for (let n = 0; n < 10; n++) held.push(await app.get(LockService).acquire(`replica-${i}-job-${n}`));
        for (const e of ['a', 'b', 'c']) app.get(LeaderElectionService).changes(`election-${e}`).subscribe();
      }
      // Settled: every campaign joined, every holder's watch made; then the idle window.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const before = await requestsByMethod(ctx.endpoints);
      const cpuBefore = etcdPids.map(processCpuMs);
      await new Promise((resolve) => setTimeout(resolve, windowMs));
      const counts = received(before, await requestsByMethod(ctx.endpoints));
      const cpuMs = etcdPids.map(processCpuMs).reduce((total, ms, i) => total + ms - cpuBefore[i], 0);
      const minutes = windowMs / 60_000;
      const all = Object.values(counts).reduce((a, b) => a + b, 0);
      rounds.push({
        replicas,
        requestsPerReplicaPerMinute: all / replicas / minutes,
        keepalivesPerReplicaPerMinute: (counts.LeaseKeepAlive ?? 0) / replicas / minutes,
        otherRequests: all - (counts.LeaseKeepAlive ?? 0),
        etcdCpuPercent: (cpuMs / windowMs) * 100,
        etcdMemoryMiB: await etcdMemoryMiB(ctx.endpoints),
        etcdMemoryGrowthMiB: (await etcdMemoryMiB(ctx.endpoints)) - memoryBefore,
        watchers: await sum(ctx.endpoints, 'etcd_debugging_mvcc_watcher_total'),
        keys: await sum(ctx.endpoints, 'etcd_debugging_mvcc_keys_total'),
      });
    } finally {
      await Promise.all(held.map((lock) => lock.release()));
      await Promise.all(apps.map((app) => app.close()));
    }
  }
  const last = rounds[rounds.length - 1];
  return {
    id: 'idle-fleet',
    title: `Idle fleet: ${sizes.join('/')} replicas, each holding 10 locks and campaigning in 3 elections`,
    target: 'an idle replica sends keepalives only; etcd CPU reported',
    met: rounds.every((r) => r.otherRequests === 0),
    result: rounds
      .map(
        (r) =>
          `R=${r.replicas}: ${r.requestsPerReplicaPerMinute.toFixed(1)} req/replica/min (${r.otherRequests} not keepalives), ` +
          `etcd ${r.etcdCpuPercent.toFixed(1)}% CPU, ${r.etcdMemoryMiB.toFixed(0)} MiB, ${r.watchers} watchers`,
      )
      .join('; '),
    metrics: { windowMs, rounds, lastEtcdCpuPercent: last.etcdCpuPercent },
    charts: {
      'idle-fleet.svg': scaleChart(
        [
          { label: 'requests/replica/min', points: rounds.map((x) => [x.replicas, x.requestsPerReplicaPerMinute]) },
          { label: 'etcd CPU, % of a core', points: rounds.map((x) => [x.replicas, x.etcdCpuPercent]) },
          { label: 'etcd watchers', points: rounds.map((x) => [x.replicas, x.watchers]) },
          { label: 'etcd memory, MiB', points: rounds.map((x) => [x.replicas, x.etcdMemoryMiB]) },
        ],
        'An idle fleet: each replica holds 10 locks and campaigns in 3 elections',
        'replicas R',
        'cost',
      ),
    },
  };
}

/**
 * Joins in flight per instance. etcd 3.4 renews a lease only once it has applied every write it committed, and
 * fails the keepalive stream ("waiting for the applied index took too long") after 1 s of waiting: with 10 instances
 * taking 500 at a time (5,000 writes in flight, about 1.7 s of etcd's apply rate on this machine) every renewal
 * failed for seconds and a session was lost in 3 of 6 runs. 100 at a time (1,000 in flight) keeps the backlog
 * under a second. See docs/capacity.md.
 */
const TAKEN_AT_ONCE = 100;

/**
 * Scale case 4, many names: N locks held across 10 app instances (in this process, so one heap tells the
 * client's memory per held lock), `TAKEN_AT_ONCE` at a time per instance, then released. Measured: heap per held lock
 * (goal ≤ 1 KiB), etcd's memory and database growth per key, the time to take them all and to let them all go.
 */
export async function manyNames(ctx: BenchContext): Promise<CaseResult> {
  const total = scaled(ctx, 100_000, 10_000);
  const replicas = 10;
  const apps: INestApplicationContext[] = [];
  try {
    return await takeMany(ctx, apps, total, replicas);
  } finally {
    // A failed run (a session lost under the load, say) still lets go of everything it took.
    await Promise.all(apps.map((app) => app.close()));
  }
}

/** The case's run; each instance it starts goes into `apps`, which the caller closes whatever happens. */
async function takeMany(ctx: BenchContext, apps: INestApplicationContext[], total: number, replicas: number): Promise<CaseResult> {
  const perReplica = total / replicas;
  for (let i = 0; i < replicas; i++) apps.push(await startApp(ctx.endpoints, { identity: `many-${i}`, prefix: 'many/' }));
  const held: Lock[][] = apps.map(() => []);
  const heapBefore = heapAfterGc();
  const [memoryBefore, dbBefore] = [
    await etcdMemoryMiB(ctx.endpoints),
    await sum(ctx.endpoints, 'etcd_mvcc_db_total_size_in_use_in_bytes'),
  ];
  const started = performance.now();
  await Promise.all(
    apps.map(async (app, r) => {
      const locks = app.get(LockService);
      // `TAKEN_AT_ONCE` takers, each taking the next name as soon as it holds one: a steady number in flight.
      let next = 0;
      await Promise.all(
        Array.from({ length: TAKEN_AT_ONCE }, async () => {
          for (let i = next++; i < perReplica; i = next++) held[r].push(await locks.acquire(`r${r}-n${i}`));
        }),
      );
    }),
  );
  const acquireMs = performance.now() - started;
  // Holders' own watches are made 20 ms after their joins: let them all be made before the heap is read.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const bytesPerLock = (heapAfterGc() - heapBefore) / total;
  const memoryMiB = await etcdMemoryMiB(ctx.endpoints);
  const dbBytes = await sum(ctx.endpoints, 'etcd_mvcc_db_total_size_in_use_in_bytes');
  const releaseStarted = performance.now();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  const shutdownMs = performance.now() - releaseStarted;
  const left = (await ctx.client.getAll().prefix('many/').keys()).length;
  return {
    id: 'many-names',
    title: `${total.toLocaleString('en')} locks held across ${replicas} replicas`,
    target: 'heap per held lock ≤ 1 KiB; all released at shutdown',
    met: bytesPerLock <= 1024 && left === 0,
    result:
      `${(bytesPerLock / 1024).toFixed(2)} KiB heap per lock; taken in ${(acquireMs / 1000).toFixed(1)} s ` +
      `(${(total / (acquireMs / 1000)).toFixed(0)}/s), let go at shutdown in ${(shutdownMs / 1000).toFixed(1)} s; ` +
      `etcd +${(((memoryMiB - memoryBefore) * 2 ** 20) / total).toFixed(0)} B memory and ` +
      `+${((dbBytes - dbBefore) / total).toFixed(0)} B database per key; ${left} keys left`,
    metrics: {
      locks: total,
      replicas,
      bytesPerLock,
      acquireMs,
      shutdownMs,
      etcdMemoryBytesPerKey: ((memoryMiB - memoryBefore) * 2 ** 20) / total,
      etcdDbBytesPerKey: (dbBytes - dbBefore) / total,
      keysLeft: left,
    },
  };
}
