import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  InvalidArgumentError,
  InvalidOptionsError,
  LeaderElectionService,
  LockService,
  MaxConcurrent,
  ReadWriteLockService,
  SemaphoreService,
  Sharded,
  ShardingService,
  Singleton,
  ScheduledJob,
  ScheduledJobsService,
} from '../lib/index.js';
import { assertScheduled } from '../lib/scheduling/schedule-metadata.js';
import { resolveOptions } from '../lib/options/etcd-lock.options.js';
import { EtcdLockTestingModule } from '../lib/testing/index.js';
import { ROOT } from './harness/processes.js';

/*
 * The table of what each option and argument accepts (docs/errors.md): every row is tried with bad values here, and must
 * raise the error the row names, naming the option or argument. A row without probes, or probes without a row,
 * fails: the table and the code cannot drift apart. Runs on the in-memory etcd: validation sends nothing.
 */
const readme = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
const table = readme.slice(readme.indexOf('<!-- input-table:start -->'), readme.indexOf('<!-- input-table:end -->'));
const rows = [...table.matchAll(/^\| (`[^`]+`|any other option) \| [^|]+ \| .+ \| `(\w+)` \|$/gm)].map((m) => ({
  id: m[1].replaceAll('`', ''),
  error: m[2],
}));

type Probe = [call: (app: TestingModule) => unknown, named: string];
const D = 2 ** 31; // one ms over the longest duration
const option = (options: Record<string, unknown>, named = Object.keys(options)[0]): Probe => [() => resolveOptions(options), named];

const probes: Record<string, Probe[]> = {
  hosts: [option({ hosts: [] }), option({ hosts: ['http://a:1', 'https://b:2'] }), option({ hosts: 5 })],
  client: [option({ client: {} }), option({ client: { kv: {}, leaseClient: {}, watch() {} }, hosts: 'x' }, 'hosts')],
  etcd: [option({ etcd: 'tls' }), option({ etcd: { hosts: 'x' } }, 'etcd.hosts')],
  prefix: [
    option({ prefix: 5 }),
    option({ prefix: 'a\u001b[2J/' }),
    option({ prefix: '/a/' }),
    option({ prefix: 'a//b/' }),
    option({ prefix: 'p'.repeat(1025) }),
  ],
  ttl: [option({ ttl: 1 }), option({ ttl: 2.5 }), option({ ttl: 2_147_484 }), option({ ttl: '10' })],
  identity: [option({ identity: '' }), option({ identity: 'a\0b' }), option({ identity: 7 })],
  connectTimeout: [option({ connectTimeout: 0 }), option({ connectTimeout: D }), option({ connectTimeout: Number.NaN })],
  requestTimeout: [option({ requestTimeout: -1 }), option({ requestTimeout: D }), option({ requestTimeout: Number.POSITIVE_INFINITY })],
  shutdownTimeout: [option({ shutdownTimeout: -1 }), option({ shutdownTimeout: D })],
  election: [option({ election: 'a/b' }), option({ election: '' }), option({ election: 'a\u202eb' })],
  telemetry: [
    option({ telemetry: true }),
    option({ telemetry: { enabled: 'yes' } }, 'telemetry.enabled'),
    option({ telemetry: { names: true } }, 'telemetry.names'),
  ],
  clock: [option({ clock: Date }), option({ clock: { now: () => 0 } })],
  leaderPriority: [option({ leaderPriority: Number.NaN }), option({ leaderPriority: '1' })],
  maxTermMs: [option({ maxTermMs: 0 }), option({ maxTermMs: D })],
  'any other option': [option({ tll: 10 })],
  name: [
    [(app) => app.get(LockService).acquire(''), 'name'],
    [(app) => app.get(LockService).tryAcquire('a/b'), 'name'],
    [(app) => app.get(LockService).holder('x\u001b[2J'), 'name'],
    [(app) => app.get(LockService).acquire('n'.repeat(1025)), 'name'],
    [(app) => app.get(LeaderElectionService).campaign('a/b'), 'election'],
    [(app) => app.get(SemaphoreService).acquire('a\rb', { limit: 1 }), 'name'],
    [(app) => app.get(ReadWriteLockService).acquireRead('a\u202eb'), 'name'],
    [(app) => app.get(ShardingService).join('', { shards: 2 }), 'group'],
    [() => Singleton('a/b'), 'key'],
    [() => Sharded('a\0', { shards: 2 }), 'group'],
    [() => ScheduledJob('a/b'), 'name'],
    [(app) => app.get(ScheduledJobsService).pause(''), 'name'],
  ],
  options: [
    [(app) => app.get(LockService).acquire('x', 'fast' as never), 'options'],
    [(app) => app.get(LockService).acquire('x', { timout: 5 } as never), 'options.timout'],
    [(app) => app.get(SemaphoreService).tryAcquire('x', { limit: 1, timeout: 5 } as never), 'options.timeout'],
    [() => Singleton('x', { retries: 3 } as never), 'options.retries'],
  ],
  'options.timeout': [
    [(app) => app.get(LockService).acquire('x', { timeout: -1 }), 'options.timeout'],
    [(app) => app.get(LockService).acquire('x', { timeout: 30 * 86_400_000 }), 'options.timeout'],
    [(app) => app.get(ReadWriteLockService).acquireWrite('x', { timeout: D }), 'options.timeout'],
    [(app) => app.get(SemaphoreService).acquire('x', { limit: 1, timeout: Number.NaN }), 'options.timeout'],
    [() => Singleton('x', { wait: true, timeout: D }), 'options.timeout'],
    [() => MaxConcurrent('x', 2, { wait: true, timeout: -5 }), 'options.timeout'],
  ],
  'options.signal': [
    [(app) => app.get(LockService).acquire('x', { signal: {} as never }), 'options.signal'],
    [(app) => app.get(LeaderElectionService).campaign('x', { signal: 'stop' as never }), 'options.signal'],
  ],
  'options.value': [
    [(app) => app.get(LockService).acquire('x', { value: 7 as never }), 'options.value'],
    [(app) => app.get(LockService).tryAcquire('x', { value: 'v'.repeat(1024 * 1024 + 1) }), 'options.value'],
    [(app) => app.get(ReadWriteLockService).tryAcquireRead('x', { value: null as never }), 'options.value'],
  ],
  'options.limit': [
    [(app) => app.get(SemaphoreService).acquire('x', { limit: 0 }), 'options.limit'],
    [(app) => app.get(SemaphoreService).tryAcquire('x', { limit: 10_001 }), 'options.limit'],
    [(app) => app.get(SemaphoreService).acquire('x', { limit: 1.5 }), 'options.limit'],
  ],
  limit: [[() => MaxConcurrent('x', 0), 'limit']],
  'options.maxHoldMs': [
    [(app) => app.get(LockService).acquire('x', { maxHoldMs: 0 }), 'options.maxHoldMs'],
    [(app) => app.get(LockService).tryAcquire('x', { maxHoldMs: D }), 'options.maxHoldMs'],
    [(app) => app.get(SemaphoreService).tryAcquire('x', { limit: 1, maxHoldMs: 1.5 }), 'options.maxHoldMs'],
    [(app) => app.get(ReadWriteLockService).acquireRead('x', { maxHoldMs: -1 }), 'options.maxHoldMs'],
    [(app) => app.get(LockService).acquireAll(['x', 'y'], { maxHoldMs: Number.NaN }), 'options.maxHoldMs'],
    [() => Singleton('x', { maxHoldMs: 0 }), 'options.maxHoldMs'],
    [() => MaxConcurrent('x', 2, { maxHoldMs: D }), 'options.maxHoldMs'],
  ],
  'options.reentrant': [
    [(app) => app.get(LockService).acquire('x', { reentrant: 'yes' as never }), 'options.reentrant'],
    [(app) => app.get(LockService).tryAcquire('x', { reentrant: 1 as never }), 'options.reentrant'],
  ],
  names: [
    [(app) => app.get(LockService).acquireAll([]), 'names'],
    [(app) => app.get(LockService).withLocks(['a', 'a'], () => undefined), 'names'],
    [(app) => app.get(LockService).acquireAll(['a', 'b/c']), 'names[1]'],
  ],
  to: [[(app) => app.get(LeaderElectionService).transfer(undefined, ''), 'to']],
  'options.shards': [
    [(app) => app.get(ShardingService).join('g', { shards: 0 }), 'options.shards'],
    [() => Sharded('g', { shards: 4097 }), 'options.shards'],
  ],
  'options.rebalanceDelayMs': [
    [(app) => app.get(ShardingService).join('g', { shards: 2, rebalanceDelayMs: 3e9 }), 'options.rebalanceDelayMs'],
    [() => Sharded('g', { shards: 2, rebalanceDelayMs: -1 }), 'options.rebalanceDelayMs'],
  ],
  'options.minHoldMs': [
    [() => Singleton('x', { minHoldMs: D }), 'options.minHoldMs'],
    [() => Sharded('g', { shards: 2, minHoldMs: Number.POSITIVE_INFINITY }), 'options.minHoldMs'],
  ],
  'options.wait': [[() => Singleton('x', { wait: 'yes' as never }), 'options.wait']],
  'options.onBusy': [[() => MaxConcurrent('x', 2, { onBusy: 'queue' as never }), 'options.onBusy']],
  'options.overlap': [[() => ScheduledJob('j', { overlap: 'queue' as never }), 'options.overlap']],
  'options.catchUp': [[() => ScheduledJob('j', { catchUp: 'some' as never }), 'options.catchUp']],
  'options.catchUpWindowMs': [[() => ScheduledJob('j', { catchUpWindowMs: -1 }), 'options.catchUpWindowMs']],
  'options.retries': [[() => ScheduledJob('j', { retries: 1.5 }), 'options.retries']],
  'options.history': [
    [() => ScheduledJob('j', { history: 0 }), 'options.history'],
    [() => ScheduledJob('j', { history: 2_000_000 }), 'options.history'],
  ],
  schedule: [[() => assertScheduled(() => undefined, 'Jobs.run'), 'schedule']],
  fn: [
    [(app) => app.get(LockService).withLock('x', 'run' as never), 'fn'],
    [(app) => app.get(SemaphoreService).withPermit('x', 5 as never, { limit: 1 }), 'fn'],
    [(app) => app.get(ReadWriteLockService).withRead('x', undefined as never), 'fn'],
    [(app) => app.get(ReadWriteLockService).withWrite('x', {} as never), 'fn'],
  ],
};

const errors: Record<string, new (...args: never[]) => Error> = { InvalidOptionsError, InvalidArgumentError };

let app: TestingModule;
beforeAll(async () => {
  app = await Test.createTestingModule({ imports: [EtcdLockTestingModule.forRoot()] }).compile();
  await app.init();
});
afterAll(() => app.close());

describe('the table of what each option and argument accepts (docs/errors.md)', () => {
  it('has a row for every probed option and argument, and probes for every row', () => {
    expect(rows.map((row) => row.id).sort()).toEqual(Object.keys(probes).sort());
  });

  it.each(rows)('$id: bad values raise $error naming it', async ({ id, error }) => {
    for (const [call, named] of probes[id]) {
      const outcome = await (async () => call(app))().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(outcome).toBeInstanceOf(errors[error]);
      expect((outcome as { field?: string; argument?: string }).field ?? (outcome as { argument?: string }).argument).toBe(named);
    }
  });
});
