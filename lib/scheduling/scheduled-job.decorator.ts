import { guardMethod, runnerOf } from '../decorators/guarded-method.js';
import { SCHEDULED_JOB_METADATA } from '../options/etcd-lock.constants.js';
import { assertName } from '../util/validation.js';
import { type ResolvedJobOptions, resolveJobOptions, type ScheduledJobOptions } from './scheduled-job.options.js';

/** What `@ScheduledJob` stores on the method, for the explorer. */
export interface ScheduledJobMetadata {
  /** The job's name across the fleet (default `<Class>.<method>`). */
  readonly name: string;
  readonly options: ResolvedJobOptions;
  /** The method itself, for the runs the library starts (catch-up, retries, manual triggers). */
  readonly original: (...args: unknown[]) => unknown;
}

/**
 * Runs the method once for each of its fire times, on one replica, whatever the replicas' clocks say. The fire
 * times are those of the `@Cron` or `@Interval` it also has (in either order). Each call (a tick of that schedule,
 * or a direct call) claims the fire time at or before now in etcd, in one request: the replica that claims it runs
 * the method as a hold (`ScheduledJobsService.current()`: its fencing token and `signal`); the others return
 * `undefined`. Runs are recorded in etcd (`ScheduledJobsService.history`); missed fire times are caught up,
 * abandoned runs retried, by `options`. The decorated method always returns a Promise.
 */
export function ScheduledJob(name?: string, options?: ScheduledJobOptions): MethodDecorator {
  if (name !== undefined) assertName(name, 'name');
  const resolved = resolveJobOptions(options);
  return (target, propertyKey, descriptor) =>
    guardMethod(target, propertyKey, descriptor, '@ScheduledJob', (original, label) => {
      const job = name ?? label;
      const wrapper = async function (this: object) {
        return runnerOf(this, label).runScheduled(job, label, () => original.apply(this, []));
      };
      const metadata: ScheduledJobMetadata = { name: job, options: resolved, original };
      Reflect.defineMetadata(SCHEDULED_JOB_METADATA, metadata, wrapper);
      return wrapper;
    }) as typeof descriptor;
}
