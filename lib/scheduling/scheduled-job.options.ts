import { InvalidArgumentError } from '../errors.js';
import { assertDuration, assertOptions } from '../util/validation.js';

/** What `@ScheduledJob` does when a fire time comes while a run of the job still goes on (anywhere in the fleet). */
export type OverlapPolicy = 'skip' | 'buffer-one' | 'allow' | 'cancel-previous';

/** Which fire times missed while no replica could run them are run when one can. */
export type CatchUpPolicy = 'none' | 'latest' | 'all';

/** Options of `@ScheduledJob`. */
export interface ScheduledJobOptions {
  /**
   * When a fire time comes while a run goes on: `skip` it (recorded as skipped; the default), `buffer-one` (run it
   * when the run going on ends; one fire time is kept, later ones are skipped), `allow` both to run, or
   * `cancel-previous` (the running one's `signal` aborts and its fenced writes fail).
   */
  overlap?: OverlapPolicy;
  /**
   * Fire times missed while no replica could run them (all down, the runner dead, etcd unreachable), run when a
   * replica can: `none`, the `latest` only, or `all` (the default), within `catchUpWindowMs`.
   */
  catchUp?: CatchUpPolicy;
  /** How far back missed fire times are caught up, in ms. Default 60000. */
  catchUpWindowMs?: number;
  /** How many times a fire time whose run was abandoned (its replica died) runs again, elsewhere. Default 0. */
  retries?: number;
  /** How many fire times' records etcd keeps for the job (at least 1). Default 100. */
  history?: number;
}

export type ResolvedJobOptions = Required<ScheduledJobOptions>;

const KNOWN = ['overlap', 'catchUp', 'catchUpWindowMs', 'retries', 'history'];

/** Checks `@ScheduledJob`'s options at decoration time; every error names the option. */
export function resolveJobOptions(options: ScheduledJobOptions | undefined): ResolvedJobOptions {
  assertOptions(options, 'options', KNOWN);
  const o = options ?? {};
  const oneOf = <T extends string>(field: string, value: T | undefined, allowed: readonly T[], fallback: T): T => {
    if (value === undefined) return fallback;
    if (!allowed.includes(value))
      throw new InvalidArgumentError(`options.${field}`, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
    return value;
  };
  const count = (field: string, value: number | undefined, min: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 1_000_000) {
      throw new InvalidArgumentError(`options.${field}`, `must be a whole number from ${min} to 1000000, got ${String(value)}`);
    }
    return value;
  };
  if (o.catchUpWindowMs !== undefined) assertDuration(o.catchUpWindowMs, 'options.catchUpWindowMs');
  return {
    overlap: oneOf('overlap', o.overlap, ['skip', 'buffer-one', 'allow', 'cancel-previous'], 'skip'),
    catchUp: oneOf('catchUp', o.catchUp, ['none', 'latest', 'all'], 'all'),
    catchUpWindowMs: o.catchUpWindowMs ?? 60_000,
    retries: count('retries', o.retries, 0, 0),
    history: count('history', o.history, 1, 100),
  };
}
