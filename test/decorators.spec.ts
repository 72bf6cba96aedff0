import 'reflect-metadata';
import { ConsoleLogger, Injectable, Module, Scope, SetMetadata } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cron, Interval, ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdSessionService, LeaderElectionService, LeaderOnly, LockBusyError, LockService, Singleton } from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

/** Each instance records the runs of its own app. */
const runs = new Map<string, string[]>();
const record = (identity: string, what: string) => {
  const list = runs.get(identity) ?? [];
  list.push(what);
  runs.set(identity, list);
};

/** The cron runs by job: which instance ran which fire time (its second, as the cron job scheduled it). */
const cronRuns = new Map<string, Array<{ identity: string; second: number }>>();
const cronRan: Array<() => void> = [];
function recordCron(job: string, sessions: EtcdSessionService, registry: SchedulerRegistry) {
  record(identityOf(sessions), job);
  const firedAt = registry.getCronJob(job).lastDate()?.getTime() ?? Number.NaN;
  cronRuns.set(job, [...(cronRuns.get(job) ?? []), { identity: identityOf(sessions), second: Math.floor(firedAt / 1000) }]);
  for (const wake of cronRan.splice(0)) wake();
}
async function untilCronRuns(job: string, n: number) {
  while ((cronRuns.get(job)?.length ?? 0) < n) await new Promise<void>((resolve) => cronRan.push(resolve));
}

@Injectable()
class CronAboveLeaderOnly {
  constructor(
    private readonly sessions: EtcdSessionService,
    private readonly registry: SchedulerRegistry,
  ) {}
  @Cron('* * * * * *', { name: 'cron-above' })
  @SetMetadata('custom', 'kept-1')
  @LeaderOnly()
  tick() {
    recordCron('cron-above', this.sessions, this.registry);
  }
}

@Injectable()
class LeaderOnlyAboveCron {
  constructor(
    private readonly sessions: EtcdSessionService,
    private readonly registry: SchedulerRegistry,
  ) {}
  @LeaderOnly()
  @SetMetadata('custom', 'kept-2')
  @Cron('* * * * * *', { name: 'cron-below' })
  tick() {
    recordCron('cron-below', this.sessions, this.registry);
  }
}

function identityOf(sessions: EtcdSessionService): string {
  return sessions.status().identity;
}

/** A gate the test opens to let a running method finish. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

@Injectable()
class Jobs {
  entered: Array<() => void> = [];
  calls = 0;
  current: { fencingToken: bigint } | undefined;
  release = gate();

  @Singleton('report')
  async report() {
    this.calls++;
    this.current = LockService.current();
    for (const wake of this.entered.splice(0)) wake();
    await this.release.opened;
    return 'done';
  }

  @Singleton('report', { wait: true, timeout: 5000 })
  async reportWaiting() {
    this.calls++;
    return 'waited';
  }

  @Singleton('report', { onBusy: 'throw' })
  async reportOrThrow() {
    return 'ran';
  }

  @Singleton((id: string) => `order:${id}`)
  async perOrder(id: string, work: Promise<void>) {
    await work;
    return id;
  }

  @Singleton('failing')
  async failing() {
    throw new Error('job failed');
  }

  @Singleton('held', { minHoldMs: 60_000 })
  async held() {
    return LockService.current()?.fencingToken;
  }

  @Singleton('sync')
  syncMethod(x: number) {
    return x * 2;
  }

  whenEntered(): Promise<void> {
    return new Promise((resolve) => this.entered.push(resolve));
  }
}

function appWith(providers: Array<new (...args: never[]) => unknown>, options = {}, logger?: ConsoleLogger) {
  return etcd.app(options, [ScheduleModule.forRoot()], providers as never[], logger ?? false);
}

afterEach(() => runs.clear());

describe('@LeaderOnly with @Cron', () => {
  it('runs a per-second cron once per fire time across three apps, only on the leader, in both decorator orders', async () => {
    const apps = await Promise.all(['a', 'b', 'c'].map((identity) => appWith([CronAboveLeaderOnly, LeaderOnlyAboveCron], { identity })));
    await Promise.race(apps.map((app) => firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)))));
    cronRuns.clear();
    await Promise.all([untilCronRuns('cron-above', 5), untilCronRuns('cron-below', 5)]);
    const leader = ['a', 'b', 'c'].find((_, i) => apps[i].get(LeaderElectionService).isLeader()) as string;
    for (const job of ['cron-above', 'cron-below']) {
      const ran = cronRuns.get(job) ?? [];
      // Every fire time ran on the leader, and no fire time ran twice (the other apps' crons fired too).
      expect(new Set(ran.map((r) => r.identity))).toEqual(new Set([leader]));
      expect(new Set(ran.map((r) => r.second)).size).toBe(ran.length);
    }
  });

  it('keeps the other decorators’ metadata in both orders, and the scheduler registers both jobs', async () => {
    const app = await appWith([CronAboveLeaderOnly, LeaderOnlyAboveCron]);
    expect(Reflect.getMetadata('custom', CronAboveLeaderOnly.prototype.tick)).toBe('kept-1');
    expect(Reflect.getMetadata('custom', LeaderOnlyAboveCron.prototype.tick)).toBe('kept-2');
    const jobs = app.get(SchedulerRegistry).getCronJobs();
    expect([...jobs.keys()].sort()).toEqual(['cron-above', 'cron-below']);
    expect(CronAboveLeaderOnly.prototype.tick.name).toBe('tick');
  });

  it('returns undefined on a follower without calling the method', async () => {
    const [a, b] = await Promise.all([
      appWith([CronAboveLeaderOnly], { identity: 'a' }),
      appWith([CronAboveLeaderOnly], { identity: 'b' }),
    ]);
    const leader = await Promise.race(
      [a, b].map((app) => firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean))).then(() => app)),
    );
    const follower = leader === a ? b : a;
    runs.clear();
    expect(follower.get(CronAboveLeaderOnly).tick()).toBeUndefined();
    expect(runs.size).toBe(0);
  });
});

describe('@Singleton', () => {
  it('skips a call while another replica runs it, then runs again', async () => {
    const [a, b] = await Promise.all([appWith([Jobs]), appWith([Jobs])]);
    const [jobsA, jobsB] = [a.get(Jobs), b.get(Jobs)];
    const entered = jobsA.whenEntered();
    const running = jobsA.report();
    await entered;
    expect(await jobsB.report()).toBeUndefined();
    expect(await jobsA.report()).toBeUndefined(); // also within one replica
    await expect(jobsB.reportOrThrow()).rejects.toBeInstanceOf(LockBusyError);
    const waiting = jobsB.reportWaiting();
    jobsA.release.open();
    expect(await running).toBe('done');
    expect(await waiting).toBe('waited');
    expect(jobsB.calls).toBe(1);
    expect(await jobsB.reportOrThrow()).toBe('ran');
  });

  it('gives the running method its lock through LockService.current()', async () => {
    const app = await appWith([Jobs]);
    const jobs = app.get(Jobs);
    jobs.release.open();
    await jobs.report();
    expect(typeof jobs.current?.fencingToken).toBe('bigint');
  });

  it('keys the lock by the arguments when the key is a function', async () => {
    const app = await appWith([Jobs]);
    const jobs = app.get(Jobs);
    const slow = gate();
    const first = jobs.perOrder('1', slow.opened);
    expect(await jobs.perOrder('2', Promise.resolve())).toBe('2');
    expect(await jobs.perOrder('1', Promise.resolve())).toBeUndefined();
    slow.open();
    expect(await first).toBe('1');
  });

  it('releases the lock when the method throws, and the error propagates', async () => {
    const app = await appWith([Jobs]);
    await expect(app.get(Jobs).failing()).rejects.toThrow('job failed');
    expect(await app.get(LockService).holder('failing')).toBeNull();
  });

  it('keeps the lock for minHoldMs after the method returns, and releases it at shutdown', async () => {
    const [a, b] = await Promise.all([appWith([Jobs]), appWith([Jobs])]);
    expect(typeof (await a.get(Jobs).held())).toBe('bigint');
    expect(await b.get(Jobs).held()).toBeUndefined();
    expect(await a.get(LockService).holder('held')).not.toBeNull();
    await a.close();
    expect(typeof (await b.get(Jobs).held())).toBe('bigint');
  });

  it('wraps a synchronous method into a promise', async () => {
    const app = await appWith([Jobs]);
    await expect(app.get(Jobs).syncMethod(21)).resolves.toBe(42);
  });
});

describe('both decorators', () => {
  it('fail start-up with a clear error when EtcdLockModule is not imported', async () => {
    @Module({ providers: [Jobs] })
    class NoLockModule {}
    const error = await NestFactory.createApplicationContext(NoLockModule, { logger: false, abortOnError: false }).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(error?.message).toContain('EtcdLockModule');
  });

  it('work on a request-scoped provider', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {
      @Singleton('per-request')
      async run() {
        return LockService.current() !== undefined;
      }
    }
    const app = await appWith([PerRequest]);
    const instance = await app.resolve(PerRequest);
    expect(await instance.run()).toBe(true);
  });

  it('never run when etcd is unreachable, and log it once per outage', async () => {
    const lines: string[] = [];
    class CapturingLogger extends ConsoleLogger {
      override error(message: unknown) {
        lines.push(String(message));
      }
      override log() {}
      override warn() {}
    }
    @Injectable()
    class Guarded {
      ran = 0;
      @LeaderOnly()
      lead() {
        this.ran++;
      }
      @Singleton('guarded')
      async single() {
        this.ran++;
      }
      @Interval(60_000)
      idle() {}
    }
    const app = await appWith([Guarded], { ttl: 2, requestTimeout: 300, connectTimeout: 300 }, new CapturingLogger());
    const election = app.get(LeaderElectionService);
    await firstValueFrom(election.changes().pipe(filter(Boolean)));
    const lost = firstValueFrom(election.changes().pipe(filter((leader) => !leader)));
    etcd.server.pause();
    try {
      await lost;
      const guarded = app.get(Guarded);
      expect(guarded.lead()).toBeUndefined();
      expect(await guarded.single()).toBeUndefined();
      expect(await guarded.single()).toBeUndefined();
      expect(guarded.lead()).toBeUndefined();
      expect(guarded.ran).toBe(0);
      expect(lines.filter((l) => l.includes('did not run'))).toHaveLength(1);
    } finally {
      etcd.server.resume();
    }
    await firstValueFrom(election.changes().pipe(filter(Boolean)));
  });
});

describe('graceful shutdown', () => {
  it('hands leadership over once leader-only calls end, without waiting for a singleton call still running', async () => {
    @Injectable()
    class LongWork {
      readonly leaderCall = gate();
      readonly singletonCall = gate();
      readonly singletonEntered = gate();
      singletonEnded = false;
      @LeaderOnly()
      async lead() {
        await this.leaderCall.opened;
      }
      @Singleton('long-report')
      async report() {
        this.singletonEntered.open();
        await this.singletonCall.opened;
        this.singletonEnded = true;
        return 'reported';
      }
    }
    const a = await appWith([LongWork], { identity: 'a' });
    await firstValueFrom(a.get(LeaderElectionService).changes().pipe(filter(Boolean)));
    const b = await appWith([LongWork], { identity: 'b' });
    const bLeads = firstValueFrom(b.get(LeaderElectionService).changes().pipe(filter(Boolean)));
    const work = a.get(LongWork);
    const leading = work.lead() as Promise<void>;
    const reporting = work.report();
    await work.singletonEntered.opened;

    const closing = a.close();
    work.leaderCall.open();
    await leading;
    await bLeads;
    // b leads while a's singleton call still runs (and still holds its lock).
    expect(work.singletonEnded).toBe(false);
    expect(await b.get(LockService).holder('long-report')).toMatchObject({ value: 'a' });
    work.singletonCall.open();
    expect(await reporting).toBe('reported');
    await closing;
    expect(await b.get(LockService).holder('long-report')).toBeNull();
  });
});
