import { Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { Subscription } from 'rxjs';
import { GuardedRuns } from './guarded-runs.js';
import type { Leadership } from '../election/leadership.interface.js';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { leadershipContext } from '../election/leadership-term.js';
import { pause } from '../util/wait-signal.js';
import { Backoff } from '../util/backoff.js';
import { messageOf } from '../util/error-message.js';

/** One `@OnLeadership` method of one provider instance. */
export interface LeadershipWorker {
  readonly instance: object;
  readonly method: string;
  readonly election: string;
  /** `Class.method`, for logs. */
  readonly label: string;
}

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

/**
 * Runs `@OnLeadership` methods: calls each with the term every time this instance becomes leader of its election
 * (from bootstrap on), counts the call as leader-only work so shutdown resigns only once it has settled, and
 * resigns and campaigns again after a backoff when a method fails while its term lasts.
 */
@Injectable()
export class LeadershipWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('EtcdLock');
  private readonly workers: LeadershipWorker[] = [];
  private readonly subscriptions: Subscription[] = [];
  /** Backoff per election: grows with consecutive failed terms, starts over after a term without failure. */
  private readonly backoffs = new Map<string, Backoff>();

  constructor(
    private readonly elections: LeaderElectionService,
    private readonly runs: GuardedRuns,
  ) {}

  /** @internal Called by the explorer at module init. */
  add(worker: LeadershipWorker): void {
    this.workers.push(worker);
    this.elections.declare(worker.election);
  }

  /** Nest lifecycle hook. */
  onApplicationBootstrap(): void {
    for (const worker of this.workers) {
      this.subscriptions.push(this.elections.terms(worker.election).subscribe((term) => this.start(worker, term)));
    }
  }

  /** Nest lifecycle hook. */
  onApplicationShutdown(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.unsubscribe();
  }

  private start(worker: LeadershipWorker, term: Leadership): void {
    if (this.runs.stopping || !term.isLeader) return;
    const method = (worker.instance as Record<string, (leadership: Leadership) => unknown>)[worker.method];
    const run = (async () => leadershipContext.run(term, () => method.call(worker.instance, term)))();
    this.runs.track(run, worker.election);
    run.then(
      () => this.backoffs.get(worker.election)?.reset(),
      (err) => this.failed(worker, term, err),
    );
  }

  private failed(worker: LeadershipWorker, term: Leadership, err: unknown): void {
    // Ending on the term's own signal is how the work is meant to stop.
    if (term.signal.aborted && (err === term.signal.reason || (err as Error)?.name === 'AbortError')) return;
    const message = messageOf(err);
    if (!term.isLeader) {
      this.logger.warn(`@OnLeadership ${worker.label} failed after its term ended: ${message}`);
      return;
    }
    const backoff = this.backoffs.get(worker.election) ?? new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
    this.backoffs.set(worker.election, backoff);
    const delay = backoff.next();
    this.logger.error(
      `@OnLeadership ${worker.label} failed (term ${term.fencingToken}): ${message}. Resigning from election ` +
        `'${worker.election}'; campaigning again in ${delay} ms`,
      err instanceof Error ? err.stack : undefined,
    );
    void this.resignAndRetry(worker.election, delay);
  }

  private async resignAndRetry(election: string, delay: number): Promise<void> {
    await this.elections.resign(election);
    await pause(delay);
    if (!this.runs.stopping) void this.elections.campaign(election).catch(() => undefined);
  }
}
