import { type Attributes, context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type DataPoint, type Histogram, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Injectable } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { filter, firstValueFrom } from 'rxjs';
import {
  LeaderElectionService,
  LeaderOnly,
  LockService,
  ReadWriteLockService,
  SemaphoreService,
  Sharded,
  ScheduledJob,
  ShardingService,
  Singleton,
} from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

/** A reader the test collects from on demand. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const reader = new TestReader();
const spans = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager().enable();
// Registered before any app is created, as an app's instrumentation would be.
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
context.setGlobalContextManager(contextManager);

const etcd = useEtcd();

async function points(name: string): Promise<Array<DataPoint<number | Histogram>>> {
  const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics };
  const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []) as Array<DataPoint<number | Histogram>>;
}
/** A histogram point's count (undefined when there is no such point). */
const countOf = (point: DataPoint<number | Histogram> | undefined) => (point?.value as Histogram | undefined)?.count;
const find = (list: Array<DataPoint<number | Histogram>>, attributes: Attributes) =>
  list.find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v));

afterAll(() => {
  metrics.disable();
  trace.disable();
  context.disable();
});

@Injectable()
class Jobs {
  @LeaderOnly('otel-election')
  lead(): string {
    return 'led';
  }

  @Singleton('otel-report')
  async report(): Promise<void> {
    throw new Error('report failed');
  }

  @Sharded('otel-group', { shards: 4 })
  async shards(): Promise<void> {}
}

@Injectable()
class Scheduled {
  @ScheduledJob('otel-job')
  @Interval(60_000)
  async tick(): Promise<void> {}

  @ScheduledJob('otel-failing')
  @Interval(60_000)
  async failing(): Promise<void> {
    throw new Error('job failed');
  }
}

describe('OpenTelemetry', () => {
  it('records lock waits by outcome, hold time and locks held; spans name the lock, token and outcome', async () => {
    const app = await etcd.app({ identity: 'otel' });
    const locks = app.get(LockService);
    const lock = await locks.acquire('orders:1');
    expect(find(await points('etcd_lock.lock.held'), {})?.value).toBe(1);
    const other = await etcd.app({ identity: 'other' });
    expect(await other.get(LockService).tryAcquire('orders:1')).toBeNull();
    await expect(other.get(LockService).acquire('orders:1', { timeout: 50 })).rejects.toThrow('Timed out');
    await lock.release();

    const waits = await points('etcd_lock.lock.wait.duration');
    const count = (attributes: Attributes) => countOf(find(waits, attributes));
    expect(count({ 'etcd_lock.operation': 'acquire', 'etcd_lock.outcome': 'acquired' })).toBe(1);
    expect(count({ 'etcd_lock.operation': 'try_acquire', 'etcd_lock.outcome': 'busy' })).toBe(1);
    expect(count({ 'etcd_lock.operation': 'acquire', 'etcd_lock.outcome': 'timeout' })).toBe(1);
    // Lock names are unbounded: not a metric attribute by default.
    expect(waits.every((p) => !('etcd_lock.lock.name' in p.attributes))).toBe(true);
    expect(countOf(find(await points('etcd_lock.lock.hold.duration'), {}))).toBe(1);
    expect(find(await points('etcd_lock.lock.held'), {})?.value).toBe(0);

    const acquires = spans.getFinishedSpans().filter((s) => s.name === 'etcd_lock acquire');
    expect(acquires.map((s) => [s.attributes['etcd_lock.lock.name'], s.attributes['etcd_lock.outcome']])).toEqual([
      ['orders:1', 'acquired'],
      ['orders:1', 'timeout'],
    ]);
    expect(acquires[0].attributes['etcd_lock.fencing_token']).toBe(lock.fencingToken.toString());

    // Every etcd request is timed, by kind and outcome.
    const requests = await points('etcd_lock.etcd.request.duration');
    expect(countOf(find(requests, { 'etcd_lock.request': 'txn', 'etcd_lock.outcome': 'ok' }))).toBeGreaterThan(2);
    expect(find(requests, { 'etcd_lock.request': 'lease_grant', 'etcd_lock.outcome': 'ok' })).toBeDefined();
    // The session's time left, before its local deadline.
    const remaining = find(await points('etcd_lock.session.remaining'), {})?.value as number;
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(5);
  });

  it('leadership, shards, losses and guarded runs: gauges by election and group, counters, and a span per run', async () => {
    const app = await etcd.app({ identity: 'otel-2', telemetry: { lockNames: true } }, [], [Jobs]);
    await firstValueFrom(app.get(LeaderElectionService).changes('otel-election').pipe(filter(Boolean)));
    await firstValueFrom(
      app
        .get(ShardingService)
        .owned('otel-group')
        .pipe(filter((s) => s.length === 4)),
    );
    const jobs = app.get(Jobs);
    expect(jobs.lead()).toBe('led');
    await expect(jobs.report()).rejects.toThrow('report failed');
    await jobs.shards();

    expect(find(await points('etcd_lock.leadership.leader'), { 'etcd_lock.election': 'otel-election' })?.value).toBe(1);
    expect(find(await points('etcd_lock.leadership.terms'), { 'etcd_lock.election': 'otel-election' })?.value).toBe(1);
    expect(find(await points('etcd_lock.shards.owned'), { 'etcd_lock.shard_group': 'otel-group' })?.value).toBe(4);
    expect(find(await points('etcd_lock.shards.rebalances'), { 'etcd_lock.shard_group': 'otel-group' })?.value).toBeGreaterThan(0);

    const lock = await app.get(LockService).acquire('otel-lost');
    await etcd.client.delete().key(lock.key);
    await new Promise((resolve) => lock.signal.addEventListener('abort', resolve));
    // lockNames: true puts the name on lock metrics.
    expect(
      find(await points('etcd_lock.lock.lost'), {
        'etcd_lock.kind': 'lock',
        'etcd_lock.reason': 'key-deleted',
        'etcd_lock.lock.name': 'otel-lost',
      })?.value,
    ).toBe(1);
    await lock.release();
    // Every kind of hold takes the same path: a permit's wait has its span, with its kind.
    await (await app.get(SemaphoreService).acquire('otel-permit', { limit: 2 })).release();
    const permitSpan = spans
      .getFinishedSpans()
      .find((s) => s.name === 'etcd_lock acquire' && s.attributes['etcd_lock.lock.name'] === 'otel-permit');
    expect(permitSpan?.attributes).toMatchObject({ 'etcd_lock.kind': 'semaphore', 'etcd_lock.outcome': 'acquired' });

    const finished = spans.getFinishedSpans();
    const leader = finished.find((s) => s.name === 'etcd_lock leader_only');
    expect(leader?.attributes).toMatchObject({
      'etcd_lock.election': 'otel-election',
      'etcd_lock.outcome': 'ran',
      'code.function': 'Jobs.lead',
    });
    expect(leader?.attributes['etcd_lock.fencing_token']).toBe(
      app.get(LeaderElectionService).term('otel-election')?.fencingToken.toString(),
    );
    const singleton = finished.find((s) => s.name === 'etcd_lock singleton');
    expect(singleton?.attributes).toMatchObject({ 'etcd_lock.lock.name': 'otel-report', 'etcd_lock.outcome': 'error' });
    expect(singleton?.status.code).toBe(2);
    const sharded = finished.find((s) => s.name === 'etcd_lock sharded');
    expect(sharded?.attributes).toMatchObject({
      'etcd_lock.shard_group': 'otel-group',
      'etcd_lock.shards': [0, 1, 2, 3],
      'etcd_lock.outcome': 'ran',
    });
  });

  it('records semaphore and read/write lock waits under their own operations, and counts their holds', async () => {
    const app = await etcd.app({ identity: 'otel-recipes' });
    const [semaphores, rw] = [app.get(SemaphoreService), app.get(ReadWriteLockService)];
    const permit = await semaphores.acquire('otel-sem', { limit: 1 });
    expect(await semaphores.tryAcquire('otel-sem', { limit: 1 })).toBeNull();
    const reader = await rw.acquireRead('otel-rw');
    expect(await rw.tryAcquireWrite('otel-rw')).toBeNull();
    expect(find(await points('etcd_lock.lock.held'), {})?.value).toBe(2);
    await Promise.all([permit.release(), reader.release()]);
    const waits = await points('etcd_lock.lock.wait.duration');
    const count = (operation: string, outcome: string) =>
      countOf(find(waits, { 'etcd_lock.operation': operation, 'etcd_lock.outcome': outcome }));
    expect([count('acquire_permit', 'acquired'), count('try_acquire_permit', 'busy')]).toEqual([1, 1]);
    expect([count('acquire_read', 'acquired'), count('try_acquire_write', 'busy')]).toEqual([1, 1]);
    expect(find(await points('etcd_lock.lock.held'), {})?.value).toBe(0);
  });

  it('records nothing with telemetry: { enabled: false }', async () => {
    const app = await etcd.app({ identity: 'quiet', telemetry: { enabled: false } });
    const acquired = { 'etcd_lock.operation': 'acquire', 'etcd_lock.outcome': 'acquired' };
    const waits = async () => countOf(find(await points('etcd_lock.lock.wait.duration'), acquired));
    const [spansBefore, waitsBefore] = [spans.getFinishedSpans().length, await waits()];
    await (await app.get(LockService).acquire('otel-quiet')).release();
    expect([spans.getFinishedSpans().length, await waits()]).toEqual([spansBefore, waitsBefore]);
  });

  it('a hold that a clean shutdown ends is not counted as lost', async () => {
    const app = await etcd.app({ identity: 'otel-3', telemetry: { lockNames: true } });
    const lock = await app.get(LockService).acquire('otel-at-shutdown');
    await app.close();
    expect(lock.signal.reason).toMatchObject({ reason: 'shutdown' });
    expect(find(await points('etcd_lock.lock.lost'), { 'etcd_lock.lock.name': 'otel-at-shutdown' })).toBeUndefined();
  });
  // Last: its holds would count in the lock metrics the tests above read.
  it('counts scheduled runs by job, kind and outcome, with the lag from fire time to start and the duration', async () => {
    const app = await etcd.app({ identity: 'otel-jobs' }, [], [Scheduled]);
    await app.get(Scheduled).tick();
    await expect(app.get(Scheduled).failing()).rejects.toThrow('job failed');
    const runs = await points('etcd_lock.job.runs');
    expect(find(runs, { 'etcd_lock.job': 'otel-job', 'etcd_lock.job.kind': 'scheduled', 'etcd_lock.outcome': 'ok' })?.value).toBe(1);
    expect(find(runs, { 'etcd_lock.job': 'otel-failing', 'etcd_lock.outcome': 'failed' })?.value).toBe(1);
    expect(countOf(find(await points('etcd_lock.job.lag'), { 'etcd_lock.job': 'otel-job' }))).toBe(1);
    expect(countOf(find(await points('etcd_lock.job.duration'), { 'etcd_lock.job': 'otel-failing' }))).toBe(1);
    await app.close();
    await etcd.client.delete().prefix('job/');
  });
});
