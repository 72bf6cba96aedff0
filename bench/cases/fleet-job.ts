import { Injectable } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import type { CallOptionsFactory } from 'etcd3';
import { type RunInfo, ScheduledJob, ScheduledJobsService } from 'nestjs-etcd-lock';

/** The job's interval. */
export const FIRE_MS = 1000;

/** Every run of the fleet's job, by fire time, from every replica of the fleet (all in this process). */
export class FleetRuns {
  private readonly runs = new Map<number, number>();
  private caughtUp = 0;
  private readonly waiting = new Map<number, () => void>();

  record(run: RunInfo): void {
    const at = run.fireTime.getTime();
    this.runs.set(at, (this.runs.get(at) ?? 0) + 1);
    if (run.kind === 'caught-up') this.caughtUp++;
    this.waiting.get(at)?.();
  }

  /** Resolves true once fire time `at` has run, false if it has not within `withinMs`. */
  ran(at: number, withinMs: number): Promise<boolean> {
    if (this.runs.has(at)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), withinMs);
      const done = (ran: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(at);
        resolve(ran);
      };
      this.waiting.set(at, () => done(true));
    });
  }

  /** Each fire time from `from` to `to` (both included): how many ran none, how many more than once. */
  check(from: number, to: number): { fires: number; missed: number; doubled: number; caughtUp: number } {
    let [fires, missed, doubled] = [0, 0, 0];
    for (let at = from; at <= to; at += FIRE_MS) {
      fires++;
      const n = this.runs.get(at) ?? 0;
      if (n === 0) missed++;
      if (n > 1) doubled++;
    }
    return { fires, missed, doubled, caughtUp: this.caughtUp };
  }
}

/** The first fire time after `ms`. */
export const nextFireAfter = (ms: number): number => (Math.floor(ms / FIRE_MS) + 1) * FIRE_MS;

/**
 * The fleet's scheduled job: every replica's own `@Interval` timer ticks it each second (unaligned, as in a real
 * fleet), and each fire time must run once across the fleet, through every restart.
 */
@Injectable()
export class FleetJob {
  constructor(private readonly runs: FleetRuns) {}

  @ScheduledJob('fleet-job', { history: 10 })
  @Interval(FIRE_MS)
  tick(): void {
    const run = ScheduledJobsService.currentRun();
    if (run) this.runs.record(run);
  }
}

/** Whether a call's request names a key under `root` (a key, a compare's or an operation's in a transaction). */
function names(params: unknown, root: Buffer): boolean {
  const starts = (key: unknown) => Buffer.isBuffer(key) && key.subarray(0, root.length).equals(root);
  const p = params as { key?: unknown; compare?: Array<{ key?: unknown }>; success?: unknown[]; failure?: unknown[] } | undefined;
  if (!p) return false;
  if (starts(p.key) || p.compare?.some((c) => starts(c.key))) return true;
  const ops = [...(p.success ?? []), ...(p.failure ?? [])] as Array<Record<string, { key?: unknown } | undefined>>;
  return ops.some((op) => Object.values(op).some((req) => starts(req?.key)));
}

/**
 * Calls the apps sent, seen in etcd3's call options before the send: the assignment record's writes (each txn
 * that puts the record) and the job's calls (its claims, records and releases), so that a restart's count can
 * leave out the job's ticks, which go on whatever the step does.
 */
export class CallTally {
  recordWrites = 0;
  jobCalls = 0;

  constructor(
    private readonly record: Buffer,
    private readonly jobRoot: Buffer,
  ) {}

  readonly factory: CallOptionsFactory = (context) => {
    const params = (context as { params?: unknown }).params as { success?: Array<{ request_put?: { key?: Buffer } }> } | undefined;
    if (context.method === 'txn' && params?.success?.some((op) => op.request_put?.key?.equals(this.record))) this.recordWrites++;
    if (names(params, this.jobRoot)) this.jobCalls++;
    return {};
  };
}
