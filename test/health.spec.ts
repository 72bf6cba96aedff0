import 'reflect-metadata';
import { ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdLockHealthIndicator } from '../lib/health/etcd-lock.health.js';
import { EtcdLockEventName, EtcdLockEvents, EtcdSessionService, LeaderElectionService } from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

describe('EtcdLockHealthIndicator (@nestjs/terminus)', () => {
  it('is up with the session details while the session lives, down once it is lost, up again after', async () => {
    const app = await etcd.app({ ttl: 2, requestTimeout: 300, connectTimeout: 300 }, [TerminusModule], [EtcdLockHealthIndicator as never]);
    const health = app.get(HealthCheckService);
    const indicator = app.get(EtcdLockHealthIndicator);
    const check = () => health.check([() => indicator.isHealthy('etcd')]);
    await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));

    const up = await check();
    const { leaseId } = app.get(EtcdSessionService).status();
    expect(up.status).toBe('ok');
    expect(up.info?.etcd).toMatchObject({
      status: 'up',
      leaseId,
      ttl: 2,
      elections: [
        {
          election: 'leader',
          leader: true,
          campaigning: true,
          fencingToken: app.get(LeaderElectionService).term()?.fencingToken.toString(),
        },
      ],
    });
    expect(up.info?.etcd?.remainingMs).toBeGreaterThan(0);

    const events = app.get(EtcdLockEvents).events$;
    const lost = firstValueFrom(events.pipe(filter((e) => e.type === EtcdLockEventName.SessionLost)));
    const renewed = firstValueFrom(events.pipe(filter((e) => e.type === EtcdLockEventName.SessionRenewed)));
    etcd.server.pause();
    try {
      await lost;
      const down = await check().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(down).toBeInstanceOf(ServiceUnavailableException);
      expect((down as ServiceUnavailableException).getResponse()).toMatchObject({
        status: 'error',
        error: { etcd: { status: 'down', remainingMs: 0, elections: [{ election: 'leader', leader: false }] } },
      });
    } finally {
      etcd.server.resume();
    }
    await renewed;
    expect((await check()).status).toBe('ok');
  });
});
