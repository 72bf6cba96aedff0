import 'reflect-metadata';
import { type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EtcdLockDashboardModule, EtcdLockModule, LockService } from 'nestjs-etcd-lock';
import { startApp } from '../app.js';
import type { BenchContext, CaseResult } from '../case.js';
import { quiet, received, requestsByMethod, sentByCalls } from '../etcd-metrics.js';

/** An open page: its server-sent events stream, counting the views it receives. */
interface OpenPage {
  views: number;
  close(): void;
}

async function openPage(url: string): Promise<OpenPage> {
  const stop = new AbortController();
  const res = await fetch(url, { signal: stop.signal });
  if (!res.body) throw new Error('no stream');
  const page: OpenPage = { views: 0, close: () => stop.abort() };
  const reader = res.body.getReader();
  let first: () => void = () => undefined;
  const firstView = new Promise<void>((resolve) => (first = resolve));
  void (async () => {
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) return;
      page.views += (decoder.decode(value).match(/\ndata: |^data: /g) ?? []).length;
      if (page.views > 0) first();
    }
  })();
  await firstView;
  return page;
}

/**
 * The dashboard's page server (EtcdLockDashboardModule in an Express app) under lock churn on another instance:
 * what it asks etcd per change with 1 page open and with 20 (one watch set for all), and its heap after an hour's
 * worth of churn with a new lock name every cycle (its history is bounded by count, not by time).
 */
export async function dashboardPages(ctx: BenchContext): Promise<CaseResult> {
  @Module({ imports: [EtcdLockModule.forRoot({ hosts: ctx.endpoints, identity: 'dash', ttl: 10 }), EtcdLockDashboardModule.forRoot()] })
  class DashboardBenchModule {}
  const web: INestApplication = await NestFactory.create(DashboardBenchModule, { logger: false });
  await web.listen(0, '127.0.0.1');
  const events = `${(await web.getUrl()).replace('[::1]', '127.0.0.1')}/etcd-lock/events`;
  const churn = await startApp(ctx.endpoints, { identity: 'churn' });
  const locks = churn.get(LockService);
  const cycles = ctx.quick ? 50 : 200;
  const measure = async (pages: number) => {
    await quiet(ctx.endpoints);
    const closed = await requestsByMethod(ctx.endpoints);
    const open = await Promise.all(Array.from({ length: pages }, () => openPage(events)));
    await quiet(ctx.endpoints);
    const before = await requestsByMethod(ctx.endpoints);
    const opening = received(closed, before);
    for (let i = 0; i < cycles; i++) await (await locks.acquire(`churn-${pages}-${i}`)).release();
    // The last change's view reaches the pages before the count is read.
    await quiet(ctx.endpoints);
    const counts = received(before, await requestsByMethod(ctx.endpoints));
    for (const page of open) page.close();
    const lockRequests = 2 * cycles; // a free acquire is one Txn, a release one Txn (measured in 'uncontended')
    return {
      pages,
      watchesCreated: opening.Watch ?? 0,
      requestsToOpen: sentByCalls(opening),
      pageServerRequestsPerCycle: (sentByCalls(counts) - lockRequests - (counts.Watch ?? 0)) / cycles,
      viewsPerPage: open[0].views,
    };
  };
  try {
    const one = await measure(1);
    const twenty = await measure(20);

    // An hour of churn at 5 changes a second, one page open: every lock a new name; heap after a full GC.
    const hour = ctx.quick ? 1800 : 18000;
    const page = await openPage(events);
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    for (let i = 0; i < hour; i++) await (await locks.acquire(`hour-${i}`)).release();
    await quiet(ctx.endpoints);
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;
    page.close();
    const growthMiB = (heapAfter - heapBefore) / 2 ** 20;
    const result =
      `watches created: ${one.watchesCreated} with 1 page, ${twenty.watchesCreated} with 20; page-server requests per lock cycle ` +
      `${one.pageServerRequestsPerCycle.toFixed(2)} (1 page), ${twenty.pageServerRequestsPerCycle.toFixed(2)} (20); ` +
      `heap ${growthMiB >= 0 ? '+' : ''}${growthMiB.toFixed(1)} MiB after ${hour * 2} changes`;
    return {
      id: 'dashboard',
      title: 'dashboard page server: etcd cost per open page, memory under churn',
      target: '20 pages cost what 1 does; heap bounded',
      met: twenty.watchesCreated <= one.watchesCreated && twenty.pageServerRequestsPerCycle <= one.pageServerRequestsPerCycle * 1.2 + 0.1,
      result,
      metrics: {
        one,
        twenty,
        hourOfChurn: { changes: hour * 2, heapBeforeMiB: heapBefore / 2 ** 20, heapAfterMiB: heapAfter / 2 ** 20, growthMiB },
      },
    };
  } finally {
    await churn.close();
    await web.close();
  }
}
