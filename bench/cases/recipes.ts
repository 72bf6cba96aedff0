import type { INestApplicationContext } from '@nestjs/common';
import { LockService, ReadWriteLockService, SemaphoreService } from 'nestjs-etcd-lock';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';
import { compare, medianRatio, ratioRange } from '../measure.js';
import { RUNS } from './locks.js';
import { summarize } from '../stats.js';

/** A semaphore permit cycle (limit 3) against a mutex cycle and a read-lock cycle, interleaved in one run. */
export async function semaphoreCycle(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const [locks, semaphores, rw] = [app.get(LockService), app.get(SemaphoreService), app.get(ReadWriteLockService)];
  const m = await compare(
    ctx.endpoints,
    {
      mutex: async () => (await locks.acquire('bench-mutex')).release(),
      permit: async () => (await semaphores.acquire('bench-semaphore', { limit: 3 })).release(),
      read: async () => (await rw.acquireRead('bench-rw')).release(),
    },
    { runs: ctx.quick ? 1 : RUNS, rounds: 10, perRound: scaled(ctx, 75, 10), warmup: scaled(ctx, 100, 10) },
  );
  const ratio = medianRatio(m.permit, m.mutex);
  const runs = m.permit.runOpsPerSec.length;
  return {
    id: 'semaphore',
    title: 'semaphore permit (limit 3) and read lock, against a mutex: acquire + release, one caller',
    target: `as many requests per cycle as a mutex (2), ≥ 0.95x its cycles/s (median of ${runs} runs)`,
    met: m.permit.requestsPerOpTotal <= m.mutex.requestsPerOpTotal + 0.05 && ratio >= 0.95,
    result:
      `permit ${m.permit.opsPerSec.toFixed(0)}/s (p50 ${fmt(m.permit.latency.median)}, ${m.permit.requestsPerOpTotal} req), ` +
      `read lock ${m.read.opsPerSec.toFixed(0)}/s (${m.read.requestsPerOpTotal} req), mutex ${m.mutex.opsPerSec.toFixed(0)}/s ` +
      `(${m.mutex.requestsPerOpTotal} req): permit = ${ratio.toFixed(2)}x (median of ${runs} runs; runs ${ratioRange(m.permit, m.mutex)})`,
    metrics: {
      mutex: m.mutex.opsPerSec,
      permit: m.permit.opsPerSec,
      read: m.read.opsPerSec,
      ratio,
      runs,
      permitRuns: m.permit.runOpsPerSec,
      mutexRuns: m.mutex.runOpsPerSec,
    },
    latencies: { 'mutex cycle': m.mutex.samples, 'permit cycle': m.permit.samples, 'read-lock cycle': m.read.samples },
  };
}

/**
 * Read-lock cycles per second with 1, 4 and 8 readers at once in one instance, against the same number of
 * concurrent raw put + delete pairs (etcd's own write rate, the floor: a read cycle is two writes too).
 */
export async function readerThroughput(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const rw = app.get(ReadWriteLockService);
  // Rounds alternate ours and the floor: the machine's speed drifts (2 busy cores, etcd on one of them), and one
  // block of each measured a 0.50x in one run and a 0.89x in the next at the same concurrency.
  const rounds = ctx.quick ? 2 : 10;
  const cyclesPerRound = scaled(ctx, 200, 40);
  const timed = async (readers: number, cycle: (reader: number) => Promise<unknown>) => {
    const started = performance.now();
    await Promise.all(
      Array.from({ length: readers }, async (_, reader) => {
        for (let i = 0; i < cyclesPerRound / readers; i++) await cycle(reader);
      }),
    );
    return performance.now() - started;
  };
  const read = () => rw.acquireRead('bench-readers').then((lock) => lock.release());
  const floor = async (reader: number) => {
    await ctx.client.put(`bench-floor-${reader}`).value('x');
    await ctx.client.delete().key(`bench-floor-${reader}`);
  };
  await timed(1, read); // warm-up
  await timed(1, floor);
  const rows: Array<{ readers: number; perSec: number; requestsPerCycle: number; floorPerSec: number; medianRatio: number }> = [];
  for (const readers of [1, 4, 8]) {
    const ratios: number[] = [];
    let [oursMs, floorMs, requests] = [0, 0, 0];
    for (let round = 0; round < rounds; round++) {
      const before = await requestsByMethod(ctx.endpoints);
      const ms = await timed(readers, read);
      requests += sentByCalls(received(before, await requestsByMethod(ctx.endpoints)));
      const rawMs = await timed(readers, floor);
      ratios.push(rawMs / ms);
      oursMs += ms;
      floorMs += rawMs;
    }
    const cycles = rounds * cyclesPerRound;
    rows.push({
      readers,
      perSec: cycles / (oursMs / 1000),
      requestsPerCycle: requests / cycles,
      floorPerSec: cycles / (floorMs / 1000),
      medianRatio: summarize(ratios).median,
    });
  }
  const worst = Math.min(...rows.map((r) => r.medianRatio));
  return {
    id: 'readers',
    title: 'read-lock cycles with 1, 4 and 8 concurrent readers (one instance), against as many concurrent put + delete pairs',
    target: 'readers never wait for each other: ≥ 0.7x the floor at every concurrency (median of rounds)',
    met: worst >= 0.7,
    result: rows
      .map(
        (r) =>
          `${r.readers} reader(s) ${r.perSec.toFixed(0)}/s (${r.requestsPerCycle.toFixed(2)} req/cycle; floor ${r.floorPerSec.toFixed(0)}/s; median ${r.medianRatio.toFixed(2)}x)`,
      )
      .join(', '),
    metrics: { rows, rounds },
  };
}

/**
 * A fenced write under a held lock (`lock.fencedTxn().put().commit()`: compares the lock key's create and mod
 * revisions and puts the lock key again, so that a write of the holder's in doubt cannot land after it), against
 * etcd3's own transaction with one compare and the same put (the fence by create revision alone: the floor).
 */
export async function fencedWrite(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const lock = await app.get(LockService).acquire('bench-fenced');
  try {
    const m = await compare(
      ctx.endpoints,
      {
        ours: () => lock.fencedTxn().put('bench-fenced-data', 'x').commit(),
        floor: () =>
          ctx.client
            .if(lock.key, 'Create', '==', lock.fencingToken.toString())
            .then(ctx.client.put('bench-fenced-data').value('x'))
            .commit(),
      },
      { rounds: 20, perRound: scaled(ctx, 75, 10), warmup: scaled(ctx, 100, 10) },
    );
    const ratio = m.ours.opsPerSec / m.floor.opsPerSec;
    return {
      id: 'fenced-write',
      title: 'a fenced write under a held lock, against a raw transaction fenced by create revision alone',
      // Ours writes two keys (the data and the holder's key, whose mod revision orders the holder's writes).
      target: 'one request, ≥ 0.8x the raw transaction',
      met: m.ours.requestsPerOpTotal <= 1.05 && ratio >= 0.8,
      result:
        `ours ${m.ours.opsPerSec.toFixed(0)}/s (p50 ${fmt(m.ours.latency.median)}, ${m.ours.requestsPerOpTotal} req), ` +
        `raw ${m.floor.opsPerSec.toFixed(0)}/s (p50 ${fmt(m.floor.latency.median)}): ${ratio.toFixed(2)}x`,
      metrics: { ours: m.ours.opsPerSec, floor: m.floor.opsPerSec, ratio },
      latencies: { 'fenced write': m.ours.samples, 'raw fenced txn': m.floor.samples },
    };
  } finally {
    await lock.release();
    await ctx.client.delete().key('bench-fenced-data');
  }
}
