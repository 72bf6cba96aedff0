import { InvalidArgumentError } from '../errors.js';

/**
 * A job's fire times, as epoch milliseconds on the wall clock. A fire time names a tick the same way on every
 * replica: the instant the schedule names, not the instant a replica's timer went off, so replicas whose clocks
 * differ claim the same fire time.
 */
export interface FireTimes {
  /** The schedule, as listings show it: the cron expression, or `every 1500 ms`. */
  readonly description: string;
  /** What the CLI needs to compute fire times too (stored with the job). */
  readonly spec: ScheduleSpec;
  /** The latest fire time at or before `t`. */
  atOrBefore(t: number): number;
  /** The first fire time after `t`. */
  after(t: number): number;
}

/** A schedule as stored in etcd (`job/<name>/spec`), for the CLI's listings. */
export type ScheduleSpec =
  | { readonly cron: string; readonly timeZone?: string; readonly utcOffset?: number }
  | { readonly intervalMs: number };

/** The widest gap between two fire times searched backwards from an instant: a bit more than a leap year. */
const LONGEST_GAP_MS = 367 * 24 * 3600 * 1000;

/**
 * `@Interval(ms)` fire times: every `ms` from the epoch (an interval has no phase of its own, and each replica's
 * timer starts when it does, so the epoch gives every replica the same ticks).
 */
export function intervalFireTimes(ms: number): FireTimes {
  if (!Number.isInteger(ms) || ms < 1) throw new InvalidArgumentError('interval', `must be a whole number of ms, at least 1, got ${ms}`);
  return {
    description: `every ${ms} ms`,
    spec: { intervalMs: ms },
    atOrBefore: (t) => Math.floor(t / ms) * ms,
    after: (t) => Math.floor(t / ms) * ms + ms,
  };
}

/** What `cron`'s `CronTime` offers us (imported when a job has a cron schedule: `@nestjs/schedule` brings it). */
interface CronTimeLike {
  getNextDateFrom(start: Date, timeZone?: string): { toMillis(): number };
}

/** `@Cron(expression)` fire times, computed by the `cron` package that `@nestjs/schedule` fires them with. */
export async function cronFireTimes(spec: { cron: string; timeZone?: string; utcOffset?: number }): Promise<FireTimes> {
  const { CronTime } = (await import('cron')) as unknown as {
    CronTime: new (source: string, timeZone?: string | null, utcOffset?: number | null) => CronTimeLike;
  };
  let time: CronTimeLike;
  try {
    time = spec.utcOffset === undefined ? new CronTime(spec.cron, spec.timeZone ?? null) : new CronTime(spec.cron, null, spec.utcOffset);
  } catch (err) {
    throw new InvalidArgumentError('cron', `'${spec.cron}' is not a cron expression: ${(err as Error).message}`);
  }
  const after = (t: number) => time.getNextDateFrom(new Date(t), spec.timeZone).toMillis();
  return {
    description: spec.cron,
    spec,
    after,
    atOrBefore(t) {
      // Search back from t in widening steps for a fire time, then walk forward to the last one at or before t.
      for (let back = 1000; back <= LONGEST_GAP_MS * 60; back *= 60) {
        let fire = after(t - back);
        if (fire > t) continue;
        for (let next = after(fire); next <= t; next = after(fire)) fire = next;
        return fire;
      }
      throw new InvalidArgumentError('cron', `'${spec.cron}' has no fire time in the year before ${new Date(t).toISOString()}`);
    },
  };
}
