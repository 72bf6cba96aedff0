import { Injectable, Logger } from '@nestjs/common';
import { EtcdUnavailableError, LockBusyError, LockTimeoutError } from '../errors.js';
import type { Lock } from '../locks/lock.interface.js';
import type { SingletonOptions } from './singleton-options.interface.js';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { leadershipContext } from '../election/leadership-term.js';
import type { HoldKind } from '../events/etcd-lock.events.js';
import { runInHold } from '../locks/hold-path.js';
import { LockService } from '../locks/lock.service.js';
import { EtcdSessionService } from '../session/session.service.js';
import { shardContext } from '../sharding/shard-set.js';
import { ShardingService } from '../sharding/sharding.service.js';
import { SemaphoreService } from '../semaphores/semaphore.service.js';
import { type RunSpan, Telemetry } from '../telemetry/telemetry.js';
import { assertName } from '../util/validation.js';
import { LogOnce } from '../util/log-once.js';
import { ScheduledJobsService } from '../scheduling/scheduled-jobs.service.js';
import { GuardedRuns } from './guarded-runs.js';

/**
 * What `@LeaderOnly`, `@Singleton`, `@MaxConcurrent` and `@Sharded` methods call into: decides whether a call runs
 * (never when etcd cannot confirm it may), runs it inside its hold's context and span, and logs an outage once, not
 * per call. What runs is tracked by `GuardedRuns`, which shutdown waits for.
 */
@Injectable()
export class GuardedRunner {
  private readonly logger = new Logger('EtcdLock');
  private readonly outage = new LogOnce((message) => this.logger.error(message));

  constructor(
    private readonly elections: LeaderElectionService,
    private readonly locks: LockService,
    private readonly sessions: EtcdSessionService,
    private readonly sharding: ShardingService,
    private readonly semaphores: SemaphoreService,
    private readonly telemetry: Telemetry,
    private readonly runs: GuardedRuns,
    private readonly jobs: ScheduledJobsService,
  ) {
    sessions.onSession(() => {
      this.outage.reset();
    });
  }

  /**
   * Runs `fn` if this instance leads `election` (default: the module's), with its term as
   * `LeaderElectionService.current()`; otherwise returns undefined at once, with no etcd request.
   */
  runIfLeader<T>(name: string | undefined, label: string, fn: () => T): T | undefined {
    if (this.runs.stopping) return undefined;
    const election = name ?? this.elections.defaultElection;
    const term = this.elections.term(election);
    if (!term) {
      if (!this.sessions.peek()?.alive) this.logOutage(label, 'no live etcd session');
      return undefined;
    }
    const run = () => leadershipContext.run(term, fn);
    const attributes = { 'etcd_lock.election': election, 'etcd_lock.fencing_token': term.fencingToken.toString(), 'code.function': label };
    const result = this.telemetry.enabled ? this.telemetry.run('etcd_lock leader_only', attributes, (span) => traced(span, run)) : run();
    if (result instanceof Promise) this.runs.track(result, election);
    return result;
  }

  /**
   * Runs `fn` if this instance owns shards of `group` now, with them as `ShardingService.current()`; otherwise
   * returns undefined at once, with no etcd request. None of those shards is handed over before the run ends.
   */
  runIfSharded<T>(group: string, minHoldMs: number, label: string, fn: () => T): T | undefined {
    if (this.runs.stopping) return undefined;
    const shards = this.sharding.snapshot(group);
    if (!shards) {
      if (!this.sessions.peek()?.alive) this.logOutage(label, 'no live etcd session');
      return undefined;
    }
    const inContext = () => shardContext.run(shards, fn);
    const attributes = {
      'etcd_lock.shard_group': group,
      'etcd_lock.shards': shards.shards.map((shard) => shard.index),
      'etcd_lock.fencing_tokens': shards.shards.map((shard) => shard.fencingToken.toString()),
      'code.function': label,
    };
    const result = this.telemetry.enabled
      ? this.telemetry.run('etcd_lock sharded', attributes, (span) => traced(span, inContext))
      : inContext();
    const run = result instanceof Promise ? result : Promise.resolve(result);
    shards.use(run, minHoldMs);
    if (result instanceof Promise) this.runs.track(result, null);
    return result;
  }

  /** Runs `fn` under the lock `key` (skipping, waiting or throwing when busy, as options say). */
  runSingleton<T>(key: string, options: SingletonOptions, label: string, fn: () => T | Promise<T>): Promise<T | undefined> {
    return this.runHeld(key, options, label, fn, {
      span: 'etcd_lock singleton',
      kind: 'lock',
      acquire: (timeout) => this.locks.acquire(key, { timeout, maxHoldMs: options.maxHoldMs }),
      tryAcquire: () => this.locks.tryAcquire(key, { maxHoldMs: options.maxHoldMs }),
    });
  }

  /**
   * A tick of a scheduled job: runs `fn` if this replica claims the fire time (see `ScheduledJobsService`). While
   * etcd is unreachable nothing runs; the fire time is caught up when a session is back (by the job's policy).
   */
  async runScheduled<T>(job: string, label: string, fn: () => T | Promise<T>): Promise<T | undefined> {
    if (this.runs.stopping) return undefined;
    try {
      return await this.runs.track(this.jobs.tick(job, fn), null);
    } catch (err) {
      if (!(err instanceof EtcdUnavailableError)) throw err;
      this.logOutage(label, err.message);
      return undefined;
    }
  }

  /** Runs `fn` under one of the `limit` permits of the semaphore `key` (skipping, waiting or throwing when full). */
  runWithPermit<T>(key: string, limit: number, options: SingletonOptions, label: string, fn: () => T | Promise<T>): Promise<T | undefined> {
    return this.runHeld(key, options, label, fn, {
      span: 'etcd_lock max_concurrent',
      kind: 'semaphore',
      acquire: (timeout) => this.semaphores.acquire(key, { limit, timeout, maxHoldMs: options.maxHoldMs }),
      tryAcquire: () => this.semaphores.tryAcquire(key, { limit, maxHoldMs: options.maxHoldMs }),
    });
  }

  private async runHeld<T>(
    key: string,
    options: SingletonOptions,
    label: string,
    fn: () => T | Promise<T>,
    source: HeldSource,
  ): Promise<T | undefined> {
    assertName(key, 'key');
    if (this.runs.stopping) return undefined;
    let lock: Lock | null;
    try {
      lock = options.wait ? await source.acquire(options.timeout) : await source.tryAcquire();
    } catch (err) {
      if (err instanceof EtcdUnavailableError) this.logOutage(label, err.message);
      if (options.onBusy === 'throw' || !(err instanceof EtcdUnavailableError || err instanceof LockTimeoutError)) {
        throw err;
      }
      return undefined;
    }
    if (!lock) {
      if (options.onBusy === 'throw') throw new LockBusyError(key);
      return undefined;
    }
    const held = lock;
    const takenAt = this.runs.clock.monotonic();
    const run = (async () => {
      try {
        const inContext = () => runInHold(source.kind, held, fn);
        if (!this.telemetry.enabled) return await inContext();
        const attributes = { 'etcd_lock.lock.name': key, 'etcd_lock.fencing_token': held.fencingToken.toString(), 'code.function': label };
        return await this.telemetry.run(source.span, attributes, (span) => traced(span, inContext));
      } finally {
        // Settle after the release (so the caller's next call finds the lock free), unless minHoldMs defers it.
        await this.runs.releaseAfter(held, (options.minHoldMs ?? 0) - (this.runs.clock.monotonic() - takenAt));
      }
    })();
    return this.runs.track(run, null);
  }

  private logOutage(label: string, reason: string): void {
    this.outage.report(() => `${label} did not run: ${reason}. Guarded methods are skipped until etcd answers again.`);
  }
}

/** How a guarded run takes what it holds: a lock (`@Singleton`) or a permit (`@MaxConcurrent`). */
interface HeldSource {
  readonly span: string;
  /** Whose `current()` the run sees its hold through. */
  readonly kind: HoldKind;
  acquire(timeout: number | undefined): Promise<Lock>;
  tryAcquire(): Promise<Lock | null>;
}

/** Ends `span` when `fn`'s result settles (at once for a plain value), with the outcome. */
function traced<T>(span: RunSpan, fn: () => T): T {
  let result: T;
  try {
    result = fn();
  } catch (err) {
    span.end('error', err);
    throw err;
  }
  if (result instanceof Promise) {
    result.then(
      () => span.end('ran'),
      (err: unknown) => span.end('error', err),
    );
  } else {
    span.end('ran');
  }
  return result;
}
