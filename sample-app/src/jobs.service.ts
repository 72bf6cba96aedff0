import { Injectable, Logger } from '@nestjs/common';
import { Cron } from '@nestjs/schedule';
import { LeaderOnly, LockService, ScheduledJob, ScheduledJobsService, Singleton } from 'nestjs-etcd-lock';

/** Cron jobs: one only the leader runs, one that at most one replica runs at a time, one run once per fire time. */
@Injectable()
export class JobsService {
  private readonly logger = new Logger('Jobs');
  readonly counts = { leaderTicks: 0, reportRuns: 0, heartbeats: 0 };
  lastHeartbeat: Date | undefined;

  // Recipe: leader-only cron. Every replica's scheduler fires; only the elected leader runs the body.
  @Cron('*/2 * * * * *')
  @LeaderOnly()
  leaderTick(): void {
    this.counts.leaderTicks++;
    this.logger.log(`leader tick #${this.counts.leaderTicks}`);
  }

  // Recipe: singleton job. It takes longer than its 2 s period: while one replica runs it, every other
  // firing (here or elsewhere) is skipped instead of piling up.
  @Cron('*/2 * * * * *')
  @Singleton('report')
  async report(): Promise<void> {
    const lock = LockService.current();
    this.counts.reportRuns++;
    this.logger.log(`report started (fencing token ${lock?.fencingToken})`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    this.logger.log('report finished');
  }

  // Recipe: scheduled job. Each fire time runs once across the fleet, recorded in etcd: a run whose replica
  // dies is run again elsewhere (retries), and fire times missed while no replica could run are caught up.
  @Cron('* * * * * *')
  @ScheduledJob('heartbeat', { retries: 1 })
  async heartbeat(): Promise<void> {
    const run = ScheduledJobsService.currentRun(); // which fire time, and how: scheduled, caught-up, retried
    this.counts.heartbeats++;
    this.lastHeartbeat = run?.fireTime;
  }
}
