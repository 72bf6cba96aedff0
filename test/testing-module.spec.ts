import 'reflect-metadata';
import { jest } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { filter, firstValueFrom, merge } from 'rxjs';
import {
  EtcdSessionService,
  EtcdLockEventName,
  EtcdLockEvents,
  EtcdLockModule,
  EtcdUnavailableError,
  LockTimeoutError,
  InvalidArgumentError,
  InvalidOptionsError,
  type Leadership,
  LeaderElectionService,
  LeaderOnly,
  OnLeadership,
  LockLostError,
  LockService,
  Singleton,
  Sharded,
  ShardingService,
  SemaphoreService,
  ReadWriteLockService,
  type ShardSet,
  type JobRunEvent,
  ScheduledJob,
  ScheduledJobsService,
} from '../lib/index.js';
import { Interval } from '@nestjs/schedule';
import { whenAborted } from '../lib/util/wait-signal.js';
import { EtcdLockTesting, EtcdLockTestingModule, type EtcdLockTestingOptions, InMemoryEtcd, ManualClock } from '../lib/testing/index.js';

/**
 * `EtcdLockTestingModule` runs the real services on an in-memory etcd (checked against a real etcd by
 * in-memory-etcd.spec.ts), so these tests need no etcd server: they check the semantics users' tests rely on.
 */

@Injectable()
class Jobs {
  leaderRuns = 0;
  singletonRuns = 0;

  @LeaderOnly()
  leaderTick(): string {
    this.leaderRuns++;
    return 'ran';
  }

  @Singleton('nightly')
  async nightly(): Promise<string> {
    this.singletonRuns++;
    return 'ran';
  }
}

@Injectable()
class HeldJobs {
  @Singleton('report', { minHoldMs: 1000 })
  async report(): Promise<string> {
    return 'ran';
  }
}

@Injectable()
class TenantJobs {
  @Sharded('tenants', { shards: 8 })
  sync(): ShardSet | undefined {
    return ShardingService.current();
  }
}

/** These tests lose sessions on purpose: the library's error lines would only be noise here. */
const silent = { log() {}, error() {}, warn() {} };
const apps: TestingModule[] = [];
const stores: InMemoryEtcd[] = [];

async function start(options: EtcdLockTestingOptions = {}, sharded = false): Promise<TestingModule> {
  const providers = sharded ? [Jobs, TenantJobs] : [Jobs, HeldJobs];
  const app = await Test.createTestingModule({ imports: [EtcdLockTestingModule.forRoot(options)], providers })
    .setLogger(silent)
    .compile();
  await app.init();
  apps.push(app);
  stores.push(app.get(InMemoryEtcd));
  return app;
}

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  // Every shutdown revokes its lease and the simulated replicas' leases: nothing is left behind.
  for (const store of stores.splice(0)) {
    expect({ keys: store.entries(), leases: store.leases() }).toEqual({ keys: [], leases: [] });
    store.close();
  }
});

describe('EtcdLockTestingModule', () => {
  it('runs semaphores in memory: at most `limit` permits, the next waiter served on release', async () => {
    const app = await start();
    const semaphores = app.get(SemaphoreService);
    const [one, two] = [await semaphores.acquire('exports', { limit: 2 }), await semaphores.acquire('exports', { limit: 2 })];
    expect(await semaphores.tryAcquire('exports', { limit: 2 })).toBeNull();
    const third = semaphores.acquire('exports', { limit: 2 });
    await one.release();
    const held = await third;
    expect(held.fencingToken).toBeGreaterThan(two.fencingToken);
    expect((await semaphores.holders('exports')).map((h) => h.fencingToken)).toEqual([two.fencingToken, held.fencingToken]);
    // A caller asking for another limit waits under the one in force (the oldest permit's: 2).
    expect(await semaphores.tryAcquire('exports', { limit: 3 })).toBeNull();
    await Promise.all([two.release(), held.release()]);
  });

  it('runs read/write locks in memory: readers share, a writer waits for them', async () => {
    const rw = (await start()).get(ReadWriteLockService);
    const [r1, r2] = [await rw.acquireRead('cache'), await rw.acquireRead('cache')];
    const writer = rw.acquireWrite('cache');
    await Promise.all([r1.release(), r2.release()]);
    const w = await writer;
    expect(w.fencingToken).toBeGreaterThan(r2.fencingToken);
    expect(await rw.tryAcquireRead('cache')).toBeNull();
    await w.release();
  });

  it('runs sharding in memory: one instance owns every shard, two share them, and the controls give and take shards', async () => {
    const etcd = new InMemoryEtcd();
    const a = await start({ etcd, identity: 'a' }, true);
    const owned = (app: TestingModule, n: number) =>
      firstValueFrom(
        app
          .get(ShardingService)
          .owned('tenants')
          .pipe(filter((list) => list.length === n)),
      );
    expect(await owned(a, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const b = await start({ etcd, identity: 'b' }, true);
    const [mineA, mineB] = await Promise.all([owned(a, 4), owned(b, 4)]);
    expect([...mineA, ...mineB].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    const testing = a.get(EtcdLockTesting);
    await testing.giveShards('tenants', [mineA[0], mineA[1]]);
    const set = a.get(TenantJobs).sync() as ShardSet;
    expect(set.shards.map((shard) => shard.index)).toEqual([mineA[0], mineA[1]]);
    await testing.takeShard('tenants', mineA[1]);
    expect(await whenAborted(set.shards[1].signal)).toMatchObject({ reason: 'moved', shard: mineA[1] });
    expect(set.shards[0].isOwned).toBe(true);
    await expect(testing.takeShard('tenants', mineA[1])).rejects.toThrow(InvalidArgumentError);
    await expect(testing.giveShards('tenants', [8])).rejects.toThrow("8 is not a shard of group 'tenants' (0 … 7)");
    await expect(testing.giveShards('nope', [1])).rejects.toThrow("this instance is not a member of sharding group 'nope'");
    testing.followAssignment('tenants');
    expect(await owned(a, 4)).toEqual(mineA);
  });

  it('serves acquire in arrival order with strictly increasing fencing tokens, within and across instances', async () => {
    const etcd = new InMemoryEtcd();
    const a = await start({ etcd, identity: 'a' });
    const b = await start({ etcd, identity: 'b' });
    const order: string[] = [];
    const first = await a.get(LockService).acquire('orders');
    const tokens = [first.fencingToken];
    const waiters = Promise.all(
      (
        [
          ['b1', b],
          ['a2', a],
          ['b3', b],
        ] as const
      ).map(async ([label, app]) => {
        const lock = await app.get(LockService).acquire('orders');
        order.push(label);
        tokens.push(lock.fencingToken);
        await lock.release();
      }),
    );
    // b1 is queued in etcd behind a's key (a2 waits inside a, b3 inside b, each behind its instance's caller).
    await until(() => etcd.entries('lock/orders/').length === 2);
    expect(await a.get(LockService).tryAcquire('orders')).toBeNull();
    await first.release();
    await waiters;
    expect(order).toEqual(['b1', 'a2', 'b3']);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
  });

  it('makes this instance leader or follower, and @LeaderOnly follows', async () => {
    const app = await start();
    const testing = app.get(EtcdLockTesting);
    const elections = app.get(LeaderElectionService);
    const jobs = app.get(Jobs);

    await testing.makeFollower(undefined, 'replica-b');
    expect(elections.isLeader()).toBe(false);
    expect(await elections.leader()).toBe('replica-b');
    expect(jobs.leaderTick()).toBeUndefined();
    expect(jobs.leaderRuns).toBe(0);

    const term = await testing.makeLeader();
    expect(elections.isLeader()).toBe(true);
    expect(term).toBe(elections.term());
    expect(term).toMatchObject({ election: 'leader', isLeader: true });
    expect(jobs.leaderTick()).toBe('ran');
    expect(jobs.leaderRuns).toBe(1);

    // Another replica takes over: the term's signal says how it ended.
    await testing.makeFollower();
    expect(term.signal.reason).toMatchObject({ name: 'LeadershipLostError', reason: 'key-deleted', fencingToken: term.fencingToken });
    const next = await testing.makeLeader();
    expect(next.fencingToken).toBeGreaterThan(term.fencingToken);

    // Named elections too, and the control is idempotent.
    await testing.makeFollower('reports');
    await testing.makeFollower('reports');
    expect(elections.isLeader('reports')).toBe(false);
    await testing.makeLeader('reports');
    expect(elections.isLeader('reports')).toBe(true);
  });

  it('takes leadership from another app instance sharing the in-memory etcd, which then follows', async () => {
    const etcd = new InMemoryEtcd();
    const a = await start({ etcd, identity: 'a', election: 'shared' });
    await a.get(EtcdLockTesting).makeLeader();
    const b = await start({ etcd, identity: 'b', election: 'shared' });
    const leaders = () => [a, b].map((app) => app.get(LeaderElectionService).isLeader());
    expect(leaders()).toEqual([true, false]);

    await b.get(EtcdLockTesting).makeLeader();
    expect(leaders()).toEqual([false, true]);
    expect(await a.get(LeaderElectionService).leader()).toBe('b');
    await a.get(EtcdLockTesting).makeLeader();
    expect(leaders()).toEqual([true, false]);
    // b campaigns again, behind a.
    await until(() => etcd.entries('election/shared/').length === 2);
    expect(leaders()).toEqual([true, false]);
  });

  it('plays another replica holding a lock: tryAcquire gets null, @Singleton skips, acquire waits its turn', async () => {
    const app = await start();
    const testing = app.get(EtcdLockTesting);
    const locks = app.get(LockService);
    const jobs = app.get(Jobs);

    const other = await testing.holdLock('nightly', 'replica-b');
    expect(await locks.tryAcquire('nightly')).toBeNull();
    expect(await locks.holder('nightly')).toMatchObject({ value: 'replica-b', fencingToken: other.fencingToken });
    expect(await jobs.nightly()).toBeUndefined();
    expect(jobs.singletonRuns).toBe(0);

    const waiting = locks.acquire('nightly');
    await other.release();
    const lock = await waiting;
    expect(lock.fencingToken).toBeGreaterThan(other.fencingToken);
    await lock.release();
    expect(await jobs.nightly()).toBe('ran');
  });

  it('makes a held lock be lost: its signal aborts with LockLostError and LockLost is emitted', async () => {
    const app = await start();
    const testing = app.get(EtcdLockTesting);
    const lostEvent = firstValueFrom(app.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.LockLost)));
    const outcome = await app
      .get(LockService)
      .withLock('export', async (lock) => {
        await testing.loseLock('export');
        return { aborted: lock.signal.aborted, reason: lock.signal.reason };
      })
      .catch((err: unknown) => ({ thrown: err }));
    expect(outcome).toMatchObject({ aborted: true, reason: expect.any(LockLostError) });
    expect((outcome as { reason: LockLostError }).reason.reason).toBe('key-deleted');
    expect(await lostEvent).toMatchObject({ name: 'export', reason: 'key-deleted' });
    await expect(testing.loseLock('export')).rejects.toThrow(InvalidArgumentError);
  });

  it('calls @OnLeadership methods with each term, as in production', async () => {
    const terms: Leadership[] = [];
    @Injectable()
    class Feed {
      @OnLeadership()
      follow(leadership: Leadership) {
        terms.push(leadership);
      }
    }
    const app = await Test.createTestingModule({ imports: [EtcdLockTestingModule.forRoot()], providers: [Feed] })
      .setLogger(silent)
      .compile();
    await app.init();
    apps.push(app);
    stores.push(app.get(InMemoryEtcd));
    const testing = app.get(EtcdLockTesting);
    const first = await testing.makeLeader();
    await testing.makeFollower();
    const second = await testing.makeLeader();
    expect(terms).toEqual([first, second]);
    expect(first.signal.aborted).toBe(true);
    expect(second.isLeader).toBe(true);
  });

  it('expires the session: locks and leadership end, then a new lease is granted and leadership comes back', async () => {
    const app = await start({ ttl: 5 });
    const testing = app.get(EtcdLockTesting);
    const elections = app.get(LeaderElectionService);
    const events = app.get(EtcdLockEvents);
    const term = await testing.makeLeader();
    const lock = await app.get(LockService).acquire('job');
    const renewed = firstValueFrom(events.events$.pipe(filter((e) => e.type === EtcdLockEventName.SessionRenewed)));

    await testing.expireSession();
    expect(lock.signal.aborted).toBe(true);
    expect(elections.isLeader()).toBe(false);
    expect(term.signal.reason).toMatchObject({ name: 'LeadershipLostError', reason: 'session-lost' });
    await renewed;
    await elections.campaign();
    expect(elections.isLeader()).toBe(true);
    await lock.release();
  });

  it('fails closed while etcd is unreachable, and recovers when it is back', async () => {
    const app = await start({ ttl: 2 });
    const etcd = app.get(InMemoryEtcd);
    const locks = app.get(LockService);
    const jobs = app.get(Jobs);
    const events = app.get(EtcdLockEvents);
    const lost = firstValueFrom(events.events$.pipe(filter((e) => e.type === EtcdLockEventName.SessionLost)));
    const held = await locks.acquire('during-outage');

    etcd.disconnect();
    await expect(locks.tryAcquire('other', { value: 'x' })).rejects.toThrow(EtcdUnavailableError);
    expect(await lost).toMatchObject({ reason: 'deadline-passed' });
    expect(held.signal.aborted).toBe(true);
    await expect(jobs.nightly()).resolves.toBeUndefined();
    expect(jobs.singletonRuns).toBe(0);
    // No session: acquire rejects at once, and gives back the in-process slot of the name it waited for.
    await held.release();
    await expect(locks.acquire('during-outage', { timeout: 1000 })).rejects.toThrow(EtcdUnavailableError);

    const renewed = firstValueFrom(events.events$.pipe(filter((e) => e.type === EtcdLockEventName.SessionRenewed)));
    etcd.reconnect();
    await renewed;
    expect(await jobs.nightly()).toBe('ran');
    // The name is free here again: the rejected acquire left no slot behind.
    await (await locks.acquire('during-outage', { timeout: 1000 })).release();
  });

  it("works under jest's fake timers (users' manual clock): an hour keeps the lease and the leadership; a timeout takes no real time", async () => {
    jest.useFakeTimers();
    try {
      const app = await start({ ttl: 5 });
      await app.get(EtcdLockTesting).makeLeader();
      const lease = app.get(InMemoryEtcd).leases();
      await jest.advanceTimersByTimeAsync(3_600_000);
      expect(app.get(InMemoryEtcd).leases()).toEqual(lease);
      expect(app.get(LeaderElectionService).isLeader()).toBe(true);
      expect(app.get(Jobs).leaderTick()).toBe('ran');
      // An acquire's timeout runs on the same clock: 5 s of waiting take no real time.
      const other = await app.get(EtcdLockTesting).holdLock('busy');
      const outcome = app
        .get(LockService)
        .acquire('busy', { timeout: 5000 })
        .then(
          () => 'acquired',
          (err: unknown) => (err instanceof LockTimeoutError ? 'timed out' : String(err)),
        );
      await jest.advanceTimersByTimeAsync(4_999);
      let settled = false;
      void outcome.then(() => (settled = true));
      await jest.advanceTimersByTimeAsync(0);
      expect(settled).toBe(false);
      await jest.advanceTimersByTimeAsync(1);
      expect(await outcome).toBe('timed out');
      await other.release();
      // Without renewals the lease would have expired: the store's own expiry runs on the same clock.
      app.get(InMemoryEtcd).disconnect();
      await jest.advanceTimersByTimeAsync(6_000);
      expect(app.get(InMemoryEtcd).leases()).toEqual([]);
      expect(app.get(LeaderElectionService).isLeader()).toBe(false);
      app.get(InMemoryEtcd).reconnect();
    } finally {
      jest.useRealTimers();
    }
  });

  it('runs transfer, maxHoldMs, acquireAll and inspect in memory, as against etcd', async () => {
    const clock = new ManualClock();
    const etcd = new InMemoryEtcd({ clock });
    const a = await start({ etcd, identity: 'a', election: 'moved' });
    await a.get(LeaderElectionService).campaign();
    const b = await start({ etcd, identity: 'b', election: 'moved' });
    const c = await start({ etcd, identity: 'c', election: 'moved' });
    await until(() => etcd.entries('election/moved/').length === 3);
    expect(await a.get(LeaderElectionService).transfer(undefined, 'c')).toBe('c');
    await until(() => c.get(LeaderElectionService).isLeader());
    expect(b.get(LeaderElectionService).isLeader()).toBe(false);

    const held = await a.get(LockService).acquire('bounded', { maxHoldMs: 1000 });
    const next = b.get(LockService).acquire('bounded');
    await clock.advance(1000);
    expect((held.signal.reason as LockLostError).reason).toBe('max-hold');
    const taken = await next;
    expect((await c.get(LockService).inspect('bounded')).holders.map((h) => h.value)).toEqual(['b']);
    await taken.release();

    const both = await a.get(LockService).acquireAll(['y', 'x']);
    expect(both.locks.map((l) => l.name)).toEqual(['x', 'y']);
    await both.release();
  });

  it('runs on a ManualClock: an hour keeps the session; timeouts, minHoldMs and lease expiry move only with it', async () => {
    const clock = new ManualClock();
    const app = await start({ ttl: 5, clock });
    const testing = app.get(EtcdLockTesting);
    await testing.makeLeader();
    const leases = app.get(InMemoryEtcd).leases();
    await clock.advance(3_600_000);
    expect(app.get(InMemoryEtcd).leases()).toEqual(leases);
    expect(app.get(LeaderElectionService).isLeader()).toBe(true);
    expect(app.get(EtcdSessionService).status().remainingMs).toBeGreaterThan(0);

    // An acquire's timeout runs on the clock: the real time it takes is irrelevant.
    const other = await testing.holdLock('busy');
    let outcome = 'waiting';
    const acquiring = app
      .get(LockService)
      .acquire('busy', { timeout: 5000 })
      .then(
        () => (outcome = 'acquired'),
        (err: unknown) => (outcome = err instanceof LockTimeoutError ? 'timed out' : String(err)),
      );
    await clock.advance(4_999);
    expect(outcome).toBe('waiting');
    await clock.advance(1);
    await acquiring;
    expect(outcome).toBe('timed out');
    await other.release();

    // minHoldMs keeps a singleton's lock past its call, on the clock.
    expect(await app.get(HeldJobs).report()).toBe('ran');
    expect(await app.get(LockService).holder('report')).not.toBeNull();
    await clock.advance(999);
    expect(await app.get(LockService).holder('report')).not.toBeNull();
    await clock.advance(1);
    expect(await app.get(LockService).holder('report')).toBeNull();

    // Unrenewed, the lease expires on the same clock, and the local deadline ends the session first.
    app.get(InMemoryEtcd).disconnect();
    await clock.advance(6_000);
    expect(app.get(InMemoryEtcd).leases()).toEqual([]);
    expect(app.get(LeaderElectionService).isLeader()).toBe(false);
    app.get(InMemoryEtcd).reconnect();
  });

  it('takes the clock of the InMemoryEtcd it is given, and refuses a second one', () => {
    const clock = new ManualClock();
    expect(() => EtcdLockTestingModule.forRoot({ etcd: new InMemoryEtcd(), clock })).toThrow(
      new InvalidOptionsError('clock', 'must be the clock of the InMemoryEtcd given in etcd (new InMemoryEtcd({ clock }))'),
    );
    expect(() => EtcdLockTestingModule.forRoot({ clock: {} as never })).toThrow(InvalidArgumentError);
    expect(() => new ManualClock(Number.NaN)).toThrow(InvalidArgumentError);
  });

  it('a scheduled run whose replica dies mid-run is found abandoned and run again on another replica', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 0, 0, 0, 200));
    const etcd = new InMemoryEtcd({ clock });
    const started: string[] = [];
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    @Injectable()
    class Nightly {
      constructor(private readonly sessions: EtcdSessionService) {}
      @ScheduledJob('nightly', { retries: 1 })
      @Interval(1000)
      async run() {
        started.push(`${this.sessions.status().identity}:${ScheduledJobsService.currentRun()?.kind}`);
        if (started.length === 1) await held; // the first run is still going when its replica dies
      }
    }
    const [a, b] = await Promise.all(
      ['a', 'b'].map(async (identity) => {
        const app = await Test.createTestingModule({
          imports: [EtcdLockTestingModule.forRoot({ etcd: etcd.connect(), identity })],
          providers: [Nightly],
        })
          .setLogger(silent)
          .compile();
        apps.push(app);
        return app.init();
      }),
    );
    const retried = firstValueFrom(
      b.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.JobRunEnded && e.run.kind === 'retried')),
    );
    const running = firstValueFrom(a.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.JobRunStarted)));
    const first = a.get(Nightly).run();
    await running;
    await a.get(EtcdLockTesting).expireSession();
    await retried;
    release();
    await first;
    const history = await b.get(ScheduledJobsService).history('nightly');
    expect(history.map((r) => [r.attempt, r.identity, r.kind, r.outcome])).toEqual([
      [2, 'b', 'retried', 'ok'],
      [1, 'a', 'scheduled', 'abandoned'],
    ]);
    expect(started).toEqual(['a:scheduled', 'b:retried']);
    await Promise.all(apps.splice(0).map((app) => app.close()));
    etcd.close();
  });

  it('stands in for EtcdLockModule in an existing app module (overrideModule)', async () => {
    // Nest matches an override by the very object `forRoot()` returned: the app keeps it in a constant.
    const lockModule = EtcdLockModule.forRoot({ hosts: 'http://127.0.0.1:1' });
    @Module({ imports: [lockModule], providers: [Jobs] })
    class AppModule {}
    const app = await Test.createTestingModule({ imports: [AppModule] })
      .overrideModule(lockModule)
      .useModule(EtcdLockTestingModule.forRoot())
      .compile();
    await app.init();
    apps.push(app);
    stores.push(app.get(InMemoryEtcd));
    await app.get(EtcdLockTesting).makeLeader();
    expect(app.get(Jobs).leaderTick()).toBe('ran');
  });

  it('a join whose answer is lost, applied after its caller gave up, strands no key (in memory, deterministic)', async () => {
    const etcd = new InMemoryEtcd();
    const a = await start({ etcd, identity: 'a' });
    const b = await start({ etcd, identity: 'b' });
    const port = a.get(InMemoryEtcd);
    const txn = port.txn.bind(port);
    const withheld: Array<Parameters<typeof txn>[0]> = [];
    port.txn = async (req, what) => {
      if (!what.startsWith('join the queue of')) return txn(req, what);
      withheld.push(req);
      throw new EtcdUnavailableError('etcd did not answer (withheld by the test)', ['in-memory etcd']);
    };
    await expect(a.get(LockService).tryAcquire('x')).rejects.toThrow(EtcdUnavailableError);
    await expect(a.get(LockService).acquire('x', { timeout: 50 })).rejects.toThrow(LockTimeoutError);
    port.txn = txn;
    // etcd applies the joins now: their keys are on a's lease, and no caller of a's wants them.
    for (const req of withheld) await txn(req, 'apply a late join');
    await until(() => etcd.entries('lock/x/').length === 0);
    for (const app of [b, a]) {
      const lock = await app.get(LockService).tryAcquire('x');
      expect(lock).not.toBeNull();
      await lock?.release();
    }
  });

  it('a job claim whose answer is lost, applied later, strands no hold: the run is found abandoned and retried', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 0, 0, 0, 200));
    const etcd = new InMemoryEtcd({ clock });
    const ran: string[] = [];
    @Injectable()
    class Hourly {
      constructor(private readonly sessions: EtcdSessionService) {}
      @ScheduledJob('hourly', { retries: 1 })
      @Interval(1000)
      async run() {
        ran.push(`${this.sessions.status().identity}:${ScheduledJobsService.currentRun()?.kind}`);
      }
    }
    const [a, b] = await Promise.all(
      ['a', 'b'].map(async (identity) => {
        const app = await Test.createTestingModule({
          imports: [EtcdLockTestingModule.forRoot({ etcd: etcd.connect(), identity })],
          providers: [Hourly],
        })
          .setLogger(silent)
          .compile();
        apps.push(app);
        return app.init();
      }),
    );
    const port = a.get(InMemoryEtcd);
    const txn = port.txn.bind(port);
    const withheld: Array<Parameters<typeof txn>[0]> = [];
    port.txn = async (req, what) => {
      if (!what.startsWith("join the queue of 'hourly/hold/")) return txn(req, what);
      withheld.push(req);
      throw new EtcdUnavailableError('etcd did not answer (withheld by the test)', ['in-memory etcd']);
    };
    expect(await a.get(Hourly).run()).toBeUndefined(); // a's claim went unanswered: nothing ran
    port.txn = txn;
    // Either replica may retry it (a's own watch sees the abandoned run too).
    const retried = firstValueFrom(
      merge(a.get(EtcdLockEvents).events$, b.get(EtcdLockEvents).events$).pipe(
        filter((e) => e.type === EtcdLockEventName.JobRunEnded && e.run.kind === 'retried'),
      ),
    );
    // etcd applies the claim now: a hold on a's lease that no run of a's owns, under a record that says running.
    for (const req of withheld) await txn(req, 'apply a late claim');
    const retry = (await retried) as JobRunEvent;
    // The retry's end writes its record, then lets its hold go.
    await until(() => etcd.entries('job/hourly/hold/').length === 0, [etcd]);
    expect(ran).toEqual([`${retry.run.identity}:retried`]);
    const history = await b.get(ScheduledJobsService).history('hourly');
    expect(history.map((r) => [r.attempt, r.identity, r.kind, r.outcome])).toEqual([
      [2, retry.run.identity, 'retried', 'ok'],
      [1, 'a', 'scheduled', 'abandoned'],
    ]);
    await Promise.all(apps.splice(0).map((app) => app.close()));
    etcd.close();
  });

  it('a tight acquire/release loop lets timers run: keepalives go on and the session lives', async () => {
    const app = await start({ ttl: 2 });
    const locks = app.get(LockService);
    const sessions = app.get(EtcdSessionService);
    let renewals = 0;
    sessions.peek()?.onRenew(() => renewals++);
    let cycles = 0;
    // Two keepalives are answered while the loop runs (every ttl/3): the loop alone never yields to a timer.
    while (renewals < 2) {
      expect(sessions.status().alive).toBe(true);
      const lock = await locks.acquire('tight');
      await lock.release();
      cycles++;
    }
    expect(cycles).toBeGreaterThan(0);
    expect(sessions.status().alive).toBe(true);
  });

  it('rejects options it cannot use, naming them', () => {
    expect(() => EtcdLockTestingModule.forRoot({ etcd: {} as InMemoryEtcd })).toThrow(InvalidOptionsError);
    expect(() => EtcdLockTestingModule.forRoot({ etcd: {} as InMemoryEtcd })).toThrow(/etcd.*InMemoryEtcd/);
    expect(() => EtcdLockTestingModule.forRoot({ hosts: 'x' } as EtcdLockTestingOptions)).toThrow(/hosts/);
  });
});

/** Resolves once `check` holds, tested after every change in any in-memory etcd of the test. */
function until(check: () => boolean, watched: InMemoryEtcd[] = stores): Promise<void> {
  return new Promise((resolve) => {
    const offs: Array<() => void> = [];
    const test = () => {
      if (!check()) return;
      for (const off of offs) off();
      resolve();
    };
    for (const store of watched) offs.push(store.server.onChange(() => queueMicrotask(test)));
    test();
  });
}
