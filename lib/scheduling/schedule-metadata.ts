import { InvalidArgumentError } from '../errors.js';
import { cronFireTimes, type FireTimes, intervalFireTimes } from './fire-times.js';

/** `@nestjs/schedule`'s metadata keys and scheduler types (its constants, as strings, so it stays optional). */
const SCHEDULER_TYPE = 'SCHEDULER_TYPE';
const SCHEDULE_CRON_OPTIONS = 'SCHEDULE_CRON_OPTIONS';
const SCHEDULE_INTERVAL_OPTIONS = 'SCHEDULE_INTERVAL_OPTIONS';
const CRON = 1;
const INTERVAL = 3;

/**
 * The fire times of a `@ScheduledJob` method, from the `@Cron` or `@Interval` it also has. A method with neither
 * (or with a `@Cron` of a single date, or `@Timeout`) has no fire times to claim: a typed error names it.
 */
export async function fireTimesOf(method: object, label: string): Promise<FireTimes> {
  const type = assertScheduled(method, label);
  if (type === CRON) {
    const cron = Reflect.getMetadata(SCHEDULE_CRON_OPTIONS, method) as { cronTime: string; timeZone?: unknown; utcOffset?: unknown };
    return cronFireTimes({
      cron: cron.cronTime,
      ...(typeof cron.timeZone === 'string' ? { timeZone: cron.timeZone } : {}),
      ...(typeof cron.utcOffset === 'number' ? { utcOffset: cron.utcOffset } : {}),
    });
  }
  const { timeout } = Reflect.getMetadata(SCHEDULE_INTERVAL_OPTIONS, method) as { timeout: number };
  return intervalFireTimes(timeout);
}

/** Checks, before any lease is granted, that a `@ScheduledJob` method has a recurring schedule; returns its type. */
export function assertScheduled(method: object, label: string): typeof CRON | typeof INTERVAL {
  const type = Reflect.getMetadata(SCHEDULER_TYPE, method) as number | undefined;
  if (type === INTERVAL) return INTERVAL;
  if (type !== CRON) {
    throw new InvalidArgumentError('schedule', `@ScheduledJob ${label} has no schedule: add @Cron(expression) or @Interval(ms) to it`);
  }
  const cron = Reflect.getMetadata(SCHEDULE_CRON_OPTIONS, method) as { cronTime?: unknown };
  if (typeof cron.cronTime !== 'string') {
    throw new InvalidArgumentError('schedule', `@ScheduledJob ${label} needs a recurring @Cron expression, not a single date`);
  }
  return CRON;
}
