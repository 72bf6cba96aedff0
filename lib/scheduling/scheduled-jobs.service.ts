import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { EtcdLockError, UnknownJobError } from '../errors.js';
import { EtcdLockEvents } from '../events/etcd-lock.events.js';
import { holdContext } from '../locks/hold-context.js';
import { HoldPaths } from '../locks/hold-paths.js';
import type { Lock } from '../locks/lock.interface.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdSessionService } from '../session/session.service.js';
import { assertName, assertOptions } from '../util/validation.js';
import { messageOf } from '../util/error-message.js';
import { withTimeout } from '../util/wait-signal.js';
import { type JobDeclaration, JobRuntime } from './job-runtime.js';
import type { JobRun } from './job-record.js';
import { JobControls } from './job-controls.js';
import { type RunInfo, runContext } from './run-context.js';
import type { JobStatus } from './job-status.js';

/**
 * The scheduled jobs of this app (`@ScheduledJob`), and their controls across the fleet: list them, pause and
 * resume them (a paused job stays paused across restarts, on every replica), run one now, read its history.
 */
@Injectable()
export class ScheduledJobsService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('EtcdLock');
  private readonly jobs = new Map<string, JobRuntime>();
  private stopSessions: (() => void) | undefined;
  private readonly controls: JobControls;

  /** @internal Nest constructs it. */
  constructor(
    private readonly paths: HoldPaths,
    private readonly sessions: EtcdSessionService,
    private readonly connection: EtcdConnection,
    private readonly events: EtcdLockEvents,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
  ) {
    this.controls = new JobControls(connection.port, options.prefix, options.identity, options.clock);
  }

  /** The hold of the scheduled run going on in this call, if any: its fencing token, `signal` and `txn()`. */
  static current(): Lock | undefined {
    return holdContext('job').getStore();
  }

  /** Which job, fire time and attempt the run going on in this call is, if any. */
  static currentRun(): RunInfo | undefined {
    return runContext.getStore();
  }

  /** @internal The explorer declares each job it finds. */
  declare(decl: JobDeclaration): void {
    const taken = this.jobs.get(decl.name);
    if (taken) throw new EtcdLockError(`Scheduled job '${decl.name}' is declared twice: on ${taken.decl.label} and ${decl.label}`);
    const path = this.paths.for('job', (name) => `Job '${name}'`);
    const { prefix, identity, clock } = this.options;
    this.jobs.set(
      decl.name,
      new JobRuntime(decl, { path, rpc: this.connection.port, clock, prefix, identity, events: this.events, logger: this.logger }),
    );
  }

  /** @internal A tick of a job's method (by its schedule, or a direct call). */
  tick<T>(name: string, fn: () => T | Promise<T>): Promise<T | undefined> {
    const job = this.jobs.get(name);
    if (!job) throw new EtcdLockError(`Scheduled job '${name}' ran before the app was initialised (call app.init() first)`);
    return job.tick(fn);
  }

  /** @internal For tests: resolves when the next run of the job ends anywhere, as this replica's watch sees it. */
  nextRunEnd(name: string): Promise<void> {
    return this.job(name).nextRunEnd();
  }

  /** Nest lifecycle hook: watches each job's keys, then catches up what was missed (and again after each outage). */
  async onApplicationBootstrap(): Promise<void> {
    await Promise.all([...this.jobs.values()].map((job) => job.start()));
    this.stopSessions = this.sessions.onSession(() => void this.catchUpAll());
    // What was missed is read during start-up; the runs go on in the background.
    const missed = await Promise.all([...this.jobs.values()].map((job) => this.missedBy(job)));
    for (const [i, job] of [...this.jobs.values()].entries()) void job.catchUp(missed[i]);
  }

  /** Nest lifecycle hook: no new run starts; runs going on here end (at most `shutdownTimeout`) and are recorded. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopSessions?.();
    await Promise.all([...this.jobs.values()].map((job) => job.stop()));
    const running = [...this.jobs.values()].flatMap((job) => [...job.running]);
    if (running.length === 0) return;
    await withTimeout(Promise.allSettled(running), this.options.shutdownTimeout, () => new Error('shutdown timeout')).catch(
      () => undefined,
    );
  }

  /** Nest lifecycle hook. */
  onApplicationShutdown(): void {
    this.jobs.clear();
  }

  /** The jobs of this app: schedule, next fire time, paused or not, whether a run goes on, the last run. */
  list(): Promise<JobStatus[]> {
    return Promise.all([...this.jobs.values()].map((job) => this.controls.status(job.decl.name, job.decl.fireTimes)));
  }

  /** Pauses the job on every replica (until `resume`, across restarts): its fire times are not run. */
  async pause(name: string): Promise<void> {
    await this.controls.pause(this.job(name).decl.name);
  }

  /** Resumes a paused job. The fire times that passed while it was paused are not caught up. */
  async resume(name: string): Promise<void> {
    const job = this.job(name);
    await this.controls.resume(name, job.decl.fireTimes);
  }

  /** Asks for a run now (recorded as `manual`): one replica that has the job runs it, as soon as one is up. */
  async trigger(name: string): Promise<void> {
    await this.controls.trigger(this.job(name).decl.name);
  }

  /** The job's recorded runs, newest fire time first (each fire time's attempts newest first). */
  history(name: string, options?: { limit?: number }): Promise<JobRun[]> {
    assertOptions(options, 'options', ['limit']);
    return this.controls.history(this.job(name).decl.name, options?.limit);
  }

  private job(name: string): JobRuntime {
    assertName(name, 'name');
    const job = this.jobs.get(name);
    if (!job) throw new UnknownJobError(name);
    return job;
  }

  private async catchUpAll(): Promise<void> {
    for (const job of this.jobs.values()) await job.catchUp(await this.missedBy(job));
  }

  private missedBy(job: JobRuntime): Promise<number[]> {
    return job.missed().catch((err: unknown) => {
      this.logger.warn(`Job '${job.decl.name}': could not read what to catch up: ${messageOf(err)}`);
      return [];
    });
  }
}
