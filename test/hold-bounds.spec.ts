import { AsyncResource } from 'node:async_hooks';
import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdLockEventName,
  EtcdLockEvents,
  InvalidArgumentError,
  LeaderElectionService,
  type Lock,
  LockLostError,
  type LockLostEvent,
  LockService,
  LockTimeoutError,
  ReadWriteLockService,
  SemaphoreService,
  Singleton,
} from '../lib/index.js';
import { ManualClock } from '../lib/testing/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { grpcCounts } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

/** Max hold time, reentrancy, several locks at once and queue introspection, on real etcd. */
const etcd = useEtcd();

/**
 * Two instances; the first on a manual clock (its `maxHoldMs` timers move only when the test says). Bounds stay
 * below the session's keepalive interval (TTL/3): the clock moves the keepalives too, and etcd answers in real time.
 */
async function pair(): Promise<{ clock: ManualClock; a: INestApplicationContext; b: INestApplicationContext }> {
  const clock = new ManualClock(Date.now());
  const [a, b] = await Promise.all([etcd.app({ identity: 'a', clock }), etcd.app({ identity: 'b' })]);
  return { clock, a, b };
}

const lostEvent = (app: INestApplicationContext) =>
  firstValueFrom(app.get(EtcdLockEvents).events$.pipe(filter((e): e is LockLostEvent => e.type === EtcdLockEventName.LockLost)));

describe('maxHoldMs: one bound for every kind of hold', () => {
  const kinds: Array<[string, (app: INestApplicationContext, maxHoldMs?: number) => Promise<Lock>]> = [
    ['lock', (app, maxHoldMs) => app.get(LockService).acquire('bounded', { maxHoldMs })],
    ['semaphore permit', (app, maxHoldMs) => app.get(SemaphoreService).acquire('bounded', { limit: 1, maxHoldMs })],
    ['write lock', (app, maxHoldMs) => app.get(ReadWriteLockService).acquireWrite('bounded', { maxHoldMs })],
  ];

  it.each(kinds)(
    '%s handle: aborts with max-hold when the bound passes (one timer), is released, and the next waiter gets it',
    async (_kind, take) => {
      const { clock, a, b } = await pair();
      const held = await take(a, 1000);
      const next = take(b);
      const lost = lostEvent(a);
      await clock.advance(999);
      expect(held.signal.aborted).toBe(false);
      await clock.advance(1);
      expect(held.signal.reason).toBeInstanceOf(LockLostError);
      expect((held.signal.reason as LockLostError).reason).toBe('max-hold');
      expect((await lost).reason).toBe('max-hold');
      const taken = await next;
      expect(taken.fencingToken).toBeGreaterThan(held.fencingToken);
      await taken.release();
      await held.release(); // a no-op now
    },
  );

  it('withLock: the signal aborts at the bound, and the lock is released only once the callback settles', async () => {
    const { clock, a, b } = await pair();
    let finish: () => void = () => undefined;
    const entered = new Promise<Lock>((inside) => {
      void a.get(LockService).withLock(
        'job',
        (lock) => {
          inside(lock);
          return new Promise<void>((resolve) => (finish = resolve));
        },
        { maxHoldMs: 1000 },
      );
    });
    const lock = await entered;
    const next = b.get(LockService).acquire('job');
    await etcd.waitForKeys('lock/job/', 2);
    await clock.advance(1000);
    expect((lock.signal.reason as LockLostError).reason).toBe('max-hold');
    // The work goes on: the key stays until it settles.
    expect((await a.get(LockService).inspect('job')).holders.map((h) => h.value)).toEqual(['a']);
    finish();
    await (await next).release();
  });

  it.each([0, -1, 1.5, 2 ** 31, Number.NaN, '10'])('refuses maxHoldMs %p with a typed error naming it', async (bad) => {
    const app = await etcd.app({ identity: 'a' });
    await expect(app.get(LockService).acquire('x', { maxHoldMs: bad as number })).rejects.toThrow(InvalidArgumentError);
    await expect(app.get(LockService).tryAcquire('x', { maxHoldMs: bad as number })).rejects.toThrow(/options\.maxHoldMs/);
    await expect(app.get(SemaphoreService).acquire('x', { limit: 2, maxHoldMs: bad as number })).rejects.toThrow(/options\.maxHoldMs/);
  });
});

/** A `@Singleton` method bounded by `maxHoldMs`: it waits for the test to let it finish. */
@Injectable()
class BoundedJob {
  static finish: () => void = () => undefined;
  static entered: (lock: Lock) => void = () => undefined;
  constructor(readonly locks: LockService) {}

  @Singleton('bounded-job', { maxHoldMs: 1000 })
  async run(): Promise<string> {
    const lock = LockService.current() as Lock;
    // Inside the method, the same lock again, reentrantly: at once, the same token.
    const again = await this.locks.acquire('bounded-job', { reentrant: true });
    expect(again.fencingToken).toBe(lock.fencingToken);
    await again.release();
    BoundedJob.entered(lock);
    await new Promise<void>((resolve) => (BoundedJob.finish = resolve));
    return 'done';
  }
}

describe('@Singleton with maxHoldMs (ShedLock’s lockAtMostFor)', () => {
  it('the call’s lock signal aborts at the bound; the lock is released when the call settles; reentrant inside it', async () => {
    const clock = new ManualClock(Date.now());
    const app = await etcd.app({ identity: 'a', clock }, [], [BoundedJob]);
    const entered = new Promise<Lock>((resolve) => (BoundedJob.entered = resolve));
    const call = app.get(BoundedJob).run();
    const lock = await entered;
    await clock.advance(1000);
    expect((lock.signal.reason as LockLostError).reason).toBe('max-hold');
    expect((await app.get(LockService).inspect('bounded-job')).holders).toHaveLength(1);
    BoundedJob.finish();
    expect(await call).toBe('done');
    expect((await app.get(LockService).inspect('bounded-job')).holders).toEqual([]);
  });
});

describe('reentrant: true', () => {
  it('inside the callback that holds it, across await and setTimeout: a nested handle, no request; its release keeps the lock', async () => {
    const app = await etcd.app({ identity: 'a' });
    const locks = app.get(LockService);
    await locks.withLock('r', async (outer) => {
      const before = await grpcCounts([etcd.endpoint]);
      await new Promise((resolve) => setTimeout(resolve, 1));
      const inner = await locks.acquire('r', { reentrant: true });
      const tried = await locks.tryAcquire('r', { reentrant: true });
      const after = await grpcCounts([etcd.endpoint]);
      expect(after.get('Txn')).toBe(before.get('Txn'));
      expect(after.get('Range')).toBe(before.get('Range'));
      expect(inner.fencingToken).toBe(outer.fencingToken);
      expect(tried?.fencingToken).toBe(outer.fencingToken);
      await inner.release();
      expect(inner.isHeld).toBe(false);
      expect(outer.isHeld).toBe(true);
      expect((await locks.inspect('r')).holders.map((h) => h.fencingToken)).toEqual([outer.fencingToken]);
    });
    expect((await locks.inspect('r')).holders).toEqual([]);
  });

  it('from another async context it waits, like any caller', async () => {
    const app = await etcd.app({ identity: 'a' });
    const locks = app.get(LockService);
    const elsewhere = new AbortController();
    let attempt: Promise<unknown> | undefined;
    await locks.withLock('r', async () => {
      // Started outside the callback's context: a plain waiter in the local queue.
      attempt = outside(() => locks.acquire('r', { reentrant: true, signal: elsewhere.signal }));
      await new Promise((resolve) => setImmediate(resolve));
      elsewhere.abort(new Error('gave up'));
      await expect(attempt).rejects.toThrow('gave up');
    });
  });
});

/** Runs `fn` in this module's (root) async context, wherever it is called from: not inside the caller's `withLock`. */
const outside = AsyncResource.bind(<T>(fn: () => T): T => fn());

describe('acquireAll / withLocks', () => {
  it('two instances taking overlapping sets in opposite orders, 1,000 rounds: no deadlock, never held by both', async () => {
    const [a, b] = await Promise.all([etcd.app({ identity: 'a' }), etcd.app({ identity: 'b' })]);
    const inside = new Map<string, string>();
    let overlaps = 0;
    const rounds = async (app: INestApplicationContext, names: string[], who: string) => {
      for (let i = 0; i < 500; i++) {
        await app.get(LockService).withLocks(names, async () => {
          for (const n of names) {
            if (inside.has(n)) overlaps++;
            inside.set(n, who);
          }
          await new Promise((resolve) => setImmediate(resolve));
          for (const n of names) inside.delete(n);
        });
      }
    };
    await Promise.all([rounds(a, ['x', 'y', 'z'], 'a'), rounds(b, ['z', 'y', 'w'], 'b')]);
    expect(overlaps).toBe(0);
  });

  it('all or nothing: one timeout for the set, and the locks taken are released before it rejects', async () => {
    const [a, b] = await Promise.all([etcd.app({ identity: 'a' }), etcd.app({ identity: 'b' })]);
    const held = await b.get(LockService).acquire('n2');
    await expect(a.get(LockService).acquireAll(['n2', 'n1'], { timeout: 200 })).rejects.toThrow(LockTimeoutError);
    expect((await a.get(LockService).inspect('n1')).holders).toEqual([]);
    const lost = a.get(LockService).acquireAll(['n1', 'n3']);
    const both = await lost;
    expect(both.locks.map((l) => l.name)).toEqual(['n1', 'n3']);
    // Any lock's loss aborts the set's one signal.
    await etcd.client.delete().key(both.locks[1].key);
    await whenAborted(both.signal);
    expect(both.signal.reason).toBeInstanceOf(LockLostError);
    await both.release();
    await held.release();
  });

  it.each([
    [[], 'names'],
    [['a', 'a'], 'names'],
    [['a', 'b/c'], 'names[1]'],
    ['a', 'names'],
  ])('refuses %p with InvalidArgumentError naming %s', async (names, argument) => {
    const app = await etcd.app({ identity: 'a' });
    const err = await app
      .get(LockService)
      .acquireAll(names as string[])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).message).toContain(argument);
  });
});

describe('inspect(name): holders and waiters in order, one read', () => {
  it('for a lock, a semaphore, a read/write lock and an election', async () => {
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((identity) => etcd.app({ identity })));
    const lock = await a.get(LockService).acquire('q');
    const waiting = [b.get(LockService).acquire('q')];
    await etcd.waitForKeys('lock/q/', 2);
    waiting.push(c.get(LockService).acquire('q'));
    await etcd.waitForKeys('lock/q/', 3);
    const q = await a.get(LockService).inspect('q');
    expect([...q.holders, ...q.waiters].map((e) => [e.position, e.value])).toEqual([
      [0, 'a'],
      [1, 'b'],
      [2, 'c'],
    ]);
    expect(q.holders[0].fencingToken).toBe(lock.fencingToken);

    const permits = [await a.get(SemaphoreService).acquire('s', { limit: 2 }), await b.get(SemaphoreService).acquire('s', { limit: 2 })];
    const third = c.get(SemaphoreService).acquire('s', { limit: 2 });
    await etcd.waitForKeys('semaphore/s/', 3);
    const s = await c.get(SemaphoreService).inspect('s');
    expect([s.holders.map((e) => e.value), s.waiters.map((e) => e.value)]).toEqual([['a', 'b'], ['c']]);

    const reader = await a.get(ReadWriteLockService).acquireRead('rw');
    const writer = b.get(ReadWriteLockService).acquireWrite('rw');
    await etcd.waitForKeys('rwlock/rw/', 2);
    const rw = await a.get(ReadWriteLockService).inspect('rw');
    expect([rw.holders.map((e) => [e.mode, e.value]), rw.waiters.map((e) => [e.mode, e.value])]).toEqual([
      [['read', 'a']],
      [['write', 'b']],
    ]);

    // Every instance campaigns in the default election from bootstrap: one leads, two wait, in their join order.
    await etcd.waitForKeys('election/leader/', 3);
    const e = await a.get(LeaderElectionService).inspect();
    expect(e.holders).toHaveLength(1);
    expect(e.holders[0].value).toBe(await a.get(LeaderElectionService).leader());
    expect([...e.holders, ...e.waiters].map((x) => x.value).sort()).toEqual(['a', 'b', 'c']);
    expect(e.waiters.map((x) => x.position)).toEqual([1, 2]);

    await lock.release();
    for (const next of waiting) await (await next).release();
    await Promise.all(permits.map((p) => p.release()));
    await (await third).release();
    await reader.release();
    await (await writer).release();
  });
});
