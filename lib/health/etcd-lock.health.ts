import { Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { EtcdSessionService } from '../session/session.service.js';

/**
 * A `@nestjs/terminus` health indicator (import it from `nestjs-etcd-lock/health`; terminus is an optional peer):
 * up while this instance's etcd session is alive, down once it is lost. Details: lease id, TTL, time left before
 * the local deadline, identity, and leadership per election. Read from local state: no etcd request per check.
 */
@Injectable()
export class EtcdLockHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly sessions: EtcdSessionService,
    private readonly elections: LeaderElectionService,
  ) {}

  /** Up (with details) while the session is alive, down (with the same details) once it is lost. */
  isHealthy<const Key extends string = 'etcd'>(key: Key = 'etcd' as Key): HealthIndicatorResult<Key> {
    const indicator = this.health.check(key);
    const { alive, ...session } = this.sessions.status();
    // JSON has no bigint: a term's fencing token is reported as a decimal string.
    const elections = this.elections.status().map(({ fencingToken, ...e }) => ({ ...e, fencingToken: fencingToken?.toString() }));
    const details = { ...session, elections };
    return alive ? indicator.up(details) : indicator.down(details);
  }
}
