import type { INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdLockError, InvalidArgumentError, LeaderElectionService, LeaderOnly, LockService, Singleton } from '../lib/index.js';
import { DeletionWatches } from '../lib/connection/deletion-watches.js';
import { etcdRequestCount } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

const longName = 'n'.repeat(1025);
const bigValue = 'v'.repeat(1024 * 1024 + 1);

type Call = (locks: LockService) => unknown;

/** Each row: a call with bad input, and the argument the error must name. */
const badCalls: Array<[string, Call, string]> = [
  ['acquire: name not a string', (l) => l.acquire(42 as never), 'name'],
  ['acquire: empty name', (l) => l.acquire(''), 'name'],
  ['acquire: name with NUL', (l) => l.acquire('a\0b'), 'name'],
  ['acquire: name over 1 KiB', (l) => l.acquire(longName), 'name'],
  ['acquire: name with /', (l) => l.acquire('a/b'), 'name'],
  ['acquire: name with an escape sequence', (l) => l.acquire('x\u001b[2J'), 'name'],
  ['acquire: name with a carriage return', (l) => l.acquire('job\rok'), 'name'],
  ['acquire: name with a right-to-left override', (l) => l.acquire('a\u202eb'), 'name'],
  ['acquire: timeout of 30 days (over 2^31 - 1 ms)', (l) => l.acquire('x', { timeout: 30 * 86_400_000 }), 'options.timeout'],
  ['acquire: negative timeout', (l) => l.acquire('x', { timeout: -1 }), 'options.timeout'],
  ['acquire: infinite timeout', (l) => l.acquire('x', { timeout: Number.POSITIVE_INFINITY }), 'options.timeout'],
  ['acquire: NaN timeout', (l) => l.acquire('x', { timeout: Number.NaN }), 'options.timeout'],
  ['acquire: timeout as string', (l) => l.acquire('x', { timeout: '5' as never }), 'options.timeout'],
  ['acquire: signal not an AbortSignal', (l) => l.acquire('x', { signal: {} as never }), 'options.signal'],
  ['acquire: value over 1 MiB', (l) => l.acquire('x', { value: bigValue }), 'options.value'],
  ['acquire: value not a string', (l) => l.acquire('x', { value: 7 as never }), 'options.value'],
  ['acquire: options not an object', (l) => l.acquire('x', 'fast' as never), 'options'],
  ['acquire: unknown option', (l) => l.acquire('x', { timout: 5 } as never), 'options.timout'],
  ['tryAcquire: empty name', (l) => l.tryAcquire(''), 'name'],
  ['tryAcquire: value over 1 MiB', (l) => l.tryAcquire('x', { value: bigValue }), 'options.value'],
  ['tryAcquire: options wrong type', (l) => l.tryAcquire('x', [] as never), 'options'],
  ['withLock: fn not a function', (l) => l.withLock('x', 'run' as never), 'fn'],
  ['withLock: bad name', (l) => l.withLock('', async () => 1), 'name'],
  ['withLock: bad timeout', (l) => l.withLock('x', async () => 1, { timeout: -5 }), 'options.timeout'],
  ['holder: bad name', (l) => l.holder(null as never), 'name'],
  ['watch: bad name', (l) => l.watch(''), 'name'],
];

/**
 * Once the app leads its default election (campaigning starts at bootstrap) and etcd confirmed the watch on that
 * election's keys, the app sends nothing by itself: request counts from then on are the call's own.
 */
async function settled(app: INestApplicationContext): Promise<void> {
  await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));
  const watches = app.get(DeletionWatches).of('election');
  await watches.watching(watches.watchedKeys()[0]);
}

describe('bad input to LockService', () => {
  let locks: LockService;
  let app: INestApplicationContext;
  beforeEach(async () => {
    app = await etcd.app();
    locks = app.get(LockService);
    await settled(app);
  });

  it.each(badCalls)('%s: typed error naming the argument, no request sent', async (_, call, argument) => {
    const before = await etcdRequestCount(etcd.endpoint);
    let error: unknown;
    try {
      await call(locks);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toBeInstanceOf(EtcdLockError);
    expect((error as InvalidArgumentError).argument).toBe(argument);
    expect((error as Error).message).toContain(`'${argument}'`);
    expect(await etcdRequestCount(etcd.endpoint)).toBe(before);
  });

  it('setValue rejects a value over 1 MiB without a request, and the lock stays held', async () => {
    const lock = await locks.acquire('x');
    await app.get(DeletionWatches).of('lock').watching(lock.key); // the holder watches its key from the join on
    const before = await etcdRequestCount(etcd.endpoint);
    await expect(lock.setValue(bigValue)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await etcdRequestCount(etcd.endpoint)).toBe(before);
    expect(lock.isHeld).toBe(true);
    await lock.release();
  });
});

describe('bad input to LeaderElectionService and the decorators', () => {
  let elections: LeaderElectionService;
  beforeEach(async () => {
    const app = await etcd.app();
    elections = app.get(LeaderElectionService);
    await settled(app);
  });

  const electionCalls: Array<[string, (e: LeaderElectionService) => unknown, string]> = [
    ['isLeader: empty name', (e) => e.isLeader(''), 'election'],
    ['leader: name with /', (e) => e.leader('a/b'), 'election'],
    ['observe: name not a string', (e) => e.observe(5 as never), 'election'],
    ['changes: NUL in name', (e) => e.changes('a\0'), 'election'],
    ['resign: empty name', (e) => e.resign(''), 'election'],
    ['campaign: signal not an AbortSignal', (e) => e.campaign('x', { signal: 1 as never }), 'options.signal'],
    ['campaign: unknown option', (e) => e.campaign('x', { timeout: 5 } as never), 'options.timeout'],
  ];

  it.each(electionCalls)('%s: typed error naming the argument, no request sent', async (_, call, argument) => {
    const before = await etcdRequestCount(etcd.endpoint);
    const error = await (async () => call(elections))().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).argument).toBe(argument);
    expect(await etcdRequestCount(etcd.endpoint)).toBe(before);
  });

  const decoratorCalls: Array<[string, () => unknown, string]> = [
    ['@LeaderOnly: empty election', () => LeaderOnly(''), 'election'],
    ['@Singleton: empty key', () => Singleton(''), 'key'],
    ['@Singleton: key with /', () => Singleton('a/b'), 'key'],
    ['@Singleton: wait not a boolean', () => Singleton('k', { wait: 'yes' as never }), 'options.wait'],
    ['@Singleton: unknown onBusy', () => Singleton('k', { onBusy: 'maybe' as never }), 'options.onBusy'],
    ['@Singleton: negative minHoldMs', () => Singleton('k', { minHoldMs: -1 }), 'options.minHoldMs'],
    ['@Singleton: negative timeout', () => Singleton('k', { wait: true, timeout: -1 }), 'options.timeout'],
    ['@Singleton: unknown option', () => Singleton('k', { hold: 5 } as never), 'options.hold'],
  ];

  it.each(decoratorCalls)('%s: fails when applied, naming the argument', (_, call, argument) => {
    expect(call).toThrow(InvalidArgumentError);
    try {
      call();
    } catch (err) {
      expect((err as InvalidArgumentError).argument).toBe(argument);
    }
  });
});
