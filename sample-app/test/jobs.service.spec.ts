// The sample app's own unit test, as an app team would write it: no etcd server, the library's testing module.
// The README's "Testing your app" section quotes this file.
import 'reflect-metadata';
import { Test, type TestingModule } from '@nestjs/testing';
import { ScheduledJobsService } from 'nestjs-etcd-lock';
import { EtcdLockTesting, EtcdLockTestingModule, InMemoryEtcd, ManualClock } from 'nestjs-etcd-lock/testing';
import { JobsService } from '../src/jobs.service.js';

describe('JobsService', () => {
  let app: TestingModule;
  let jobs: JobsService;
  let etcd: EtcdLockTesting;

  beforeEach(async () => {
    app = await Test.createTestingModule({
      imports: [EtcdLockTestingModule.forRoot()],
      providers: [JobsService],
    }).compile();
    await app.init(); // starts the session and the campaign, as in the app
    jobs = app.get(JobsService);
    etcd = app.get(EtcdLockTesting);
  });

  afterEach(() => app.close());

  it('ticks only while this replica leads', async () => {
    await etcd.makeFollower();
    jobs.leaderTick();
    expect(jobs.counts.leaderTicks).toBe(0);

    await etcd.makeLeader();
    jobs.leaderTick();
    expect(jobs.counts.leaderTicks).toBe(1);
  });

  it('skips the report while another replica runs it', async () => {
    const otherReplica = await etcd.holdLock('report');
    await jobs.report();
    expect(jobs.counts.reportRuns).toBe(0);
    await otherReplica.release();
  });
});

describe('JobsService, on a manual clock', () => {
  it('stops ticking once a replica cut off from etcd has outlived its lease', async () => {
    const clock = new ManualClock();
    const app = await Test.createTestingModule({
      imports: [EtcdLockTestingModule.forRoot({ clock, ttl: 10 })],
      providers: [JobsService],
    }).compile();
    await app.init();
    const jobs = app.get(JobsService);
    await app.get(EtcdLockTesting).makeLeader();

    app.get(InMemoryEtcd).disconnect(); // etcd unreachable from here
    await clock.advance(5_000); // within the TTL: still the leader
    jobs.leaderTick();
    expect(jobs.counts.leaderTicks).toBe(1);

    await clock.advance(5_000); // past it: the lease is gone, and so is the leadership
    jobs.leaderTick();
    expect(jobs.counts.leaderTicks).toBe(1);

    app.get(InMemoryEtcd).reconnect();
    await app.close();
  });
});

describe('JobsService heartbeat, a scheduled job', () => {
  it('runs each fire time on one replica only, and records it', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00.300Z'));
    const etcd = new InMemoryEtcd({ clock });
    const replicas = await Promise.all(
      ['a', 'b'].map(async (identity) => {
        const app = await Test.createTestingModule({
          imports: [EtcdLockTestingModule.forRoot({ etcd: etcd.connect(), identity })],
          providers: [JobsService],
        }).compile();
        return app.init();
      }),
    );

    // Both replicas' crons fire for 00:00:00 (a call is a tick, at the clock's time): one runs it.
    for (const app of replicas) await app.get(JobsService).heartbeat();
    const runs = replicas.map((app) => app.get(JobsService).counts.heartbeats);
    expect(runs.sort()).toEqual([0, 1]);

    const [last] = await replicas[0].get(ScheduledJobsService).history('heartbeat');
    expect(last).toMatchObject({ fireTime: new Date('2026-01-01T00:00:00Z'), kind: 'scheduled', outcome: 'ok' });

    await Promise.all(replicas.map((app) => app.close()));
    etcd.close();
  });
});
