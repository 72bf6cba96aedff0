import { AsyncLocalStorage } from 'node:async_hooks';
import type { JobRunKind } from './job-record.js';

/** The run of a scheduled job that is going on: which job, which fire time, how it came about. */
export interface RunInfo {
  /** The job's name. */
  readonly job: string;
  /** The fire time it runs for. */
  readonly fireTime: Date;
  /** How the run came about: on its schedule, caught up, retried, or asked for. */
  readonly kind: JobRunKind;
  /** 1 for the first attempt at the fire time, more for a retry. */
  readonly attempt: number;
}

/** The run whose method runs now (its hold is `ScheduledJobsService.current()`). */
export const runContext = new AsyncLocalStorage<RunInfo>();
