import type { INestApplicationContext } from '@nestjs/common';
import { CompareResult, CompareTarget, SortOrder, SortTarget } from 'etcd3';
import { LockService } from 'nestjs-etcd-lock';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { received, requestsByMethod, streamsStarted, total } from '../etcd-metrics.js';
import { compare, type Measured, medianRatio, ratioRange } from '../measure.js';

/** Runs of an interleaved comparison whose ratios are goals of their own (issue #26, question 6): judged by the median. */
export const RUNS = 10;

/** Uncontended acquire + release against etcd3's `Lock.do` and a raw put + delete (the floor). */
export async function uncontended(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const locks = app.get(LockService);
  // Our cycle's two requests with no library around them (the join, a transaction that puts the key on a lease only
  // if the name is empty and reads the queue otherwise, and the delete): what the request shape costs by itself.
  // Granted once, never renewed: its TTL outlasts the case (10 runs on a 3-member cluster take minutes); revoked
  // at the end. (A 60 s lease expired mid-case on the cluster: "requested lease not found".)
  const lease = (await ctx.client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
  const prefix = Buffer.from('bench-bare/');
  const key = Buffer.from(`bench-bare/${BigInt(lease).toString(16)}`);
  const rangeEnd = Buffer.from('bench-bare0');
  const queue = {
    request_range: { key: prefix, range_end: rangeEnd, sort_order: SortOrder.Ascend, sort_target: SortTarget.Create, keys_only: true },
  };
  const put = { request_put: { key, value: Buffer.from('bench'), lease } };
  const join = {
    compare: [{ key: prefix, range_end: rangeEnd, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' }],
    success: [put],
    failure: [put, queue],
  };
  try {
    const m = await compare(
      ctx.endpoints,
      {
        ours: async () => (await locks.acquire('bench-uncontended')).release(),
        bare: async () => {
          await ctx.client.kv.txn(join);
          await ctx.client.kv.deleteRange({ key });
        },
        etcd3Lock: () => ctx.client.lock('bench-etcd3-lock').do(async () => {}),
        floor: async () => {
          await ctx.client.put('bench-floor').value('x');
          await ctx.client.delete().key('bench-floor');
        },
      },
      { runs: ctx.quick ? 1 : RUNS, rounds: 10, perRound: scaled(ctx, 75, 10), warmup: scaled(ctx, 100, 10) },
    );
    return uncontendedResult(m);
  } finally {
    await ctx.client.leaseClient.leaseRevoke({ ID: lease });
  }
}

function uncontendedResult(m: Record<string, Measured>): CaseResult {
  const vsLock = medianRatio(m.ours, m.etcd3Lock);
  const vsFloor = medianRatio(m.ours, m.floor);
  const bareVsFloor = medianRatio(m.bare, m.floor);
  const vsBare = medianRatio(m.ours, m.bare);
  const runs = m.ours.runOpsPerSec.length;
  return {
    id: 'uncontended',
    title: 'uncontended acquire + release, one caller',
    target: `≥ 2x etcd3 Lock.do cycles/s, ≥ 0.85x put+delete floor (median of ${runs} runs), 2 requests`,
    met: vsLock >= 2 && vsFloor >= 0.85 && m.ours.requestsPerOpTotal <= 2.05,
    result:
      `${m.ours.opsPerSec.toFixed(0)}/s (p50 ${fmt(m.ours.latency.median)}, p99 ${fmt(m.ours.latency.p99)}, ` +
      `${m.ours.requestsPerOpTotal} req); median of ${runs} runs: ${vsLock.toFixed(2)}x etcd3 Lock ` +
      `(${m.etcd3Lock.requestsPerOpTotal} req; runs ${ratioRange(m.ours, m.etcd3Lock)}), ${vsFloor.toFixed(2)}x the floor ` +
      `(runs ${ratioRange(m.ours, m.floor)}); the same two requests bare ${bareVsFloor.toFixed(2)}x the floor ` +
      `(runs ${ratioRange(m.bare, m.floor)}; ours = ${vsBare.toFixed(2)}x bare)`,
    metrics: { ...strip(m), runs, oursVsEtcd3Lock: vsLock, oursVsFloor: vsFloor, bareVsFloor, oursVsBare: vsBare },
    latencies: {
      'acquire+release': m.ours.samples,
      'join+delete, bare': m.bare.samples,
      'etcd3 Lock.do': m.etcd3Lock.samples,
      'put+delete': m.floor.samples,
    },
  };
}

/** tryAcquire on a lock another instance holds, against one linearizable get. */
export async function tryAcquireHeld(ctx: BenchContext, app: INestApplicationContext, other: INestApplicationContext): Promise<CaseResult> {
  const held = await other.get(LockService).acquire('bench-held');
  const locks = app.get(LockService);
  try {
    const m = await compare(
      ctx.endpoints,
      {
        ours: async () => {
          if ((await locks.tryAcquire('bench-held')) !== null) throw new Error('bench-held was free');
        },
        get: () => ctx.client.get('bench-get').string(),
      },
      { rounds: 20, perRound: scaled(ctx, 100, 10), warmup: scaled(ctx, 100, 10) },
    );
    const ratio = m.ours.latency.median / m.get.latency.median;
    return {
      id: 'try-held',
      title: 'tryAcquire on a held lock',
      target: '1 request, latency within 1.2x of one get',
      met: m.ours.requestsPerOpTotal <= 1.05 && ratio <= 1.2,
      result:
        `p50 ${fmt(m.ours.latency.median)} (p99 ${fmt(m.ours.latency.p99)}), ${m.ours.requestsPerOpTotal} req; ` +
        `get p50 ${fmt(m.get.latency.median)} = ${ratio.toFixed(2)}x`,
      metrics: { ...strip(m), medianRatio: ratio },
      latencies: { 'tryAcquire (held)': m.ours.samples, get: m.get.samples },
    };
  } finally {
    await held.release();
  }
}

/** 8 callers in one instance on one name, against one caller, interleaved: the local queue adds no requests. */
export async function localContention(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const locks = app.get(LockService);
  const cycle = async () => (await locks.acquire('bench-local')).release();
  const cycles = scaled(ctx, 400, 40);
  const run = async (callers: number) => {
    const before = await requestsByMethod(ctx.endpoints);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        for (let i = 0; i < cycles / callers; i++) await cycle();
      }),
    );
    const ms = performance.now() - started;
    return { ms, requests: total(received(before, await requestsByMethod(ctx.endpoints))) };
  };
  for (let i = 0; i < scaled(ctx, 100, 10); i++) await cycle();
  const acc = { one: { ms: 0, requests: 0 }, eight: { ms: 0, requests: 0 } };
  for (let round = 0; round < 5; round++) {
    for (const [key, callers] of [
      ['one', 1],
      ['eight', 8],
    ] as const) {
      const r = await run(callers);
      acc[key].ms += r.ms;
      acc[key].requests += r.requests;
    }
  }
  const rate = (ms: number) => (5 * cycles) / (ms / 1000);
  const ratio = rate(acc.eight.ms) / rate(acc.one.ms);
  const reqPerCycle = acc.eight.requests / (5 * cycles);
  return {
    id: 'local-8',
    title: '8 callers in one instance on one name',
    target: '≥ 0.8x the uncontended cycles/s, no extra requests',
    met: ratio >= 0.8 && reqPerCycle <= 2.05,
    result: `${rate(acc.eight.ms).toFixed(0)}/s vs one caller ${rate(acc.one.ms).toFixed(0)}/s = ${ratio.toFixed(2)}x; ${reqPerCycle.toFixed(2)} req/cycle`,
    metrics: { eightCallersPerSec: rate(acc.eight.ms), oneCallerPerSec: rate(acc.one.ms), ratio, requestsPerCycle: reqPerCycle },
  };
}

/** 10,000 locks held at once by one instance: one lease, one keepalive stream, memory per lock. */
export async function tenThousand(ctx: BenchContext): Promise<CaseResult> {
  const count = scaled(ctx, 10_000, 1000);
  const streamsBefore = await streamsStarted(ctx.endpoints, 'LeaseKeepAlive');
  const app = await startApp(ctx.endpoints, { prefix: 'bench10k/', identity: 'holder-of-many' });
  const locks = app.get(LockService);
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const held = [];
  const started = performance.now();
  for (let i = 0; i < count; i += 500) {
    held.push(...(await Promise.all(Array.from({ length: Math.min(500, count - i) }, (_, j) => locks.acquire(`job-${i + j}`)))));
  }
  const acquireMs = performance.now() - started;
  gc?.();
  const bytesPerLock = (process.memoryUsage().heapUsed - heapBefore) / count;
  const keys = await ctx.client.getAll().prefix('bench10k/lock/').exec();
  const leases = new Set(keys.kvs.map((kv) => kv.lease)).size;
  const streams = (await streamsStarted(ctx.endpoints, 'LeaseKeepAlive')) - streamsBefore;
  await Promise.all(held.map((lock) => lock.release()));
  await app.close();
  return {
    id: 'held-10k',
    title: `${count.toLocaleString('en')} locks held by one instance`,
    target: '1 lease, 1 keepalive stream; memory per held lock reported',
    met: leases === 1 && keys.kvs.length === count && streams === 1,
    result:
      `${keys.kvs.length} keys on ${leases} lease, ${streams} keepalive stream; ` +
      `${gc ? `${(bytesPerLock / 1024).toFixed(2)} KiB heap per lock` : 'heap not measured (run node with --expose-gc)'}; ` +
      `acquired in ${(acquireMs / 1000).toFixed(1)} s (${(count / (acquireMs / 1000)).toFixed(0)}/s, 500 at a time)`,
    metrics: { locks: count, keys: keys.kvs.length, leases, keepaliveStreams: streams, bytesPerLock: gc ? bytesPerLock : null, acquireMs },
  };
}

/** The JSON-worthy part of `compare`'s result (samples go to the chart, not the JSON). */
export function strip(m: Record<string, { samples: number[] }>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(m).map(([name, { samples: _, ...rest }]) => [name, rest]));
}
