import type { INestApplicationContext } from '@nestjs/common';
import { LockService, ReadWriteLockService, SemaphoreService } from 'nestjs-etcd-lock';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';
import { compare } from '../measure.js';

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
    { rounds: 20, perRound: scaled(ctx, 75, 10), warmup: scaled(ctx, 100, 10) },
  );
  const ratio = m.permit.opsPerSec / m.mutex.opsPerSec;
  return {
    id: 'semaphore',
    title: 'semaphore permit (limit 3) and read lock, against a mutex: acquire + release, one caller',
    target: 'as many requests per cycle as a mutex (2), ≥ 0.9x its cycles/s',
    met: m.permit.requestsPerOpTotal <= m.mutex.requestsPerOpTotal + 0.05 && ratio >= 0.9,
    result:
      `permit ${m.permit.opsPerSec.toFixed(0)}/s (p50 ${fmt(m.permit.latency.median)}, ${m.permit.requestsPerOpTotal} req), ` +
      `read lock ${m.read.opsPerSec.toFixed(0)}/s (${m.read.requestsPerOpTotal} req), mutex ${m.mutex.opsPerSec.toFixed(0)}/s ` +
      `(${m.mutex.requestsPerOpTotal} req): permit = ${ratio.toFixed(2)}x`,
    metrics: { mutex: m.mutex.opsPerSec, permit: m.permit.opsPerSec, read: m.read.opsPerSec, ratio },
    latencies: { 'mutex cycle': m.mutex.samples, 'permit cycle': m.permit.samples, 'read-lock cycle': m.read.samples },
  };
}

/** Read-lock cycles per second with 1, 4 and 8 readers at once in one instance: readers share, so it should scale. */
export async function readerThroughput(ctx: BenchContext, app: INestApplicationContext): Promise<CaseResult> {
  const rw = app.get(ReadWriteLockService);
  const cycles = scaled(ctx, 800, 80);
  const rows: Array<{ readers: number; perSec: number; requestsPerCycle: number }> = [];
  for (const readers of [1, 4, 8, 1]) {
    const before = await requestsByMethod(ctx.endpoints);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: readers }, async () => {
        for (let i = 0; i < cycles / readers; i++) await (await rw.acquireRead('bench-readers')).release();
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const requests = sentByCalls(received(before, await requestsByMethod(ctx.endpoints)));
    rows.push({ readers, perSec: cycles / seconds, requestsPerCycle: requests / cycles });
  }
  // The first single-reader pass warms up; the last is the one compared.
  const measured = rows.slice(1);
  const one = measured[measured.length - 1];
  const eight = measured.find((r) => r.readers === 8) as (typeof rows)[number];
  return {
    id: 'readers',
    title: 'read-lock cycles with 1, 4 and 8 concurrent readers (one instance)',
    target: '8 readers ≥ 2x one reader’s cycles/s (readers do not wait for each other)',
    met: eight.perSec >= 2 * one.perSec,
    result: measured.map((r) => `${r.readers} reader(s) ${r.perSec.toFixed(0)}/s (${r.requestsPerCycle.toFixed(2)} req/cycle)`).join(', '),
    metrics: { rows: measured },
  };
}
