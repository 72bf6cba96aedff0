import { type BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { LeaderElectionService } from '../election/leader-election.service.js';
import type { Lock } from '../locks/lock.interface.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import type { Clock, ClockTimer } from '../clock/clock.js';
import { EtcdSessionService } from '../session/session.service.js';
import { ShardingService } from '../sharding/sharding.service.js';

/**
 * The guarded calls running now and the holds kept past their call (`minHoldMs`), and what shutdown does with
 * them: start nothing new, hand each election over as soon as its own calls ended, release each hold when its
 * call ended, leave each sharding group, all within `shutdownTimeout`.
 */
@Injectable()
export class GuardedRuns implements BeforeApplicationShutdown {
  private readonly logger = new Logger('EtcdLock');
  /** Running calls by election name (`@LeaderOnly`, `@OnLeadership`), and under `null` (holds of a call). */
  private readonly running = new Map<string | null, Set<Promise<unknown>>>();
  /** Holds kept after their call until `minHoldMs` passes. */
  private readonly holds = new Map<Lock, ClockTimer>();
  private draining = false;

  constructor(
    private readonly elections: LeaderElectionService,
    private readonly sessions: EtcdSessionService,
    private readonly sharding: ShardingService,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
  ) {
    // A transfer of an election waits for its leader-only calls and @OnLeadership work to end, as shutdown does.
    elections.addDrain((election) => Promise.allSettled([...(this.running.get(election) ?? [])]));
  }

  /** Whether shutdown has begun: nothing new starts. */
  get stopping(): boolean {
    return this.draining;
  }

  /** Counts a running call under its election (`null`: a call holding a lock or permit), so shutdown waits for it. */
  track<T>(promise: Promise<T>, key: string | null): Promise<T> {
    const calls = this.running.get(key) ?? new Set();
    this.running.set(key, calls);
    calls.add(promise);
    const forget = () => calls.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /** The module's clock, which `minHoldMs` is measured on. */
  get clock(): Clock {
    return this.options.clock;
  }

  /** Releases `lock` after `delayMs` (at once when it is 0 or less, or at shutdown). */
  async releaseAfter(lock: Lock, delayMs: number): Promise<void> {
    if (delayMs <= 0 || this.draining || !lock.isHeld) {
      await lock.release();
      return;
    }
    const timer = this.clock.setTimer(
      () => {
        this.holds.delete(lock);
        void lock.release();
      },
      delayMs,
      { unref: true },
    );
    this.holds.set(lock, timer);
  }

  /**
   * At shutdown: start nothing new; resign from each election as soon as its own leader-only calls have ended,
   * so a standby takes over within milliseconds even while a long singleton call finishes here; release each
   * singleton lock when its call ends; leave each sharding group (each shard is handed over once the runs on it
   * ended). Waits at most `shutdownTimeout` for calls.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.draining = true;
    const timeoutMs = this.options.shutdownTimeout;
    const deadline = this.sessions.beginShutdown();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - performance.now()));
    });
    const ended = (key: string | null) => Promise.race([Promise.allSettled([...(this.running.get(key) ?? [])]), timedOut]);
    // Handing over (resigns, shard leaves, releases) is bounded too: an etcd that does not answer cannot hold the
    // shutdown past the deadline. What is left then goes with the lease, revoked next.
    const handover = Promise.all([this.elections.resignAll(ended), this.sharding.leaveAll(), ended(null).then(() => this.releaseHolds())]);
    await Promise.race([handover, timedOut]);
    clearTimeout(timer);
    const left = [...this.running.values()].reduce((n, calls) => n + calls.size, 0);
    if (left > 0) {
      this.logger.warn(`${left} leader-only/singleton call(s) still running after ${timeoutMs} ms; shutting down anyway`);
    }
  }

  private async releaseHolds(): Promise<void> {
    await Promise.all(
      [...this.holds].map(([lock, timer]) => {
        timer.cancel();
        this.holds.delete(lock);
        return lock.release();
      }),
    );
  }
}
