import type { FireTimes } from './fire-times.js';
import type { ResolvedJobOptions } from './scheduled-job.options.js';

/** At most this many missed fire times are caught up at once (a per-second job down for a day has 86,400). */
export const MAX_CATCH_UP = 1000;

/**
 * The fire times to catch up, oldest first: after `since`, before `until` (or at it, with `atUntil`), within the
 * catch-up window before `now`, not in `have`, and by the policy (`none`, the `latest` only, or `all`).
 */
export function fireTimesToCatchUp(
  fireTimes: FireTimes,
  options: Pick<ResolvedJobOptions, 'catchUp' | 'catchUpWindowMs'>,
  range: { since: number; until: number; atUntil: boolean; now: number; have?: ReadonlySet<number> },
): number[] {
  if (options.catchUp === 'none' || !Number.isFinite(range.since)) return [];
  const from = Math.max(range.since, range.now - options.catchUpWindowMs - 1);
  const due = (t: number) => (range.atUntil ? t <= range.until : t < range.until);
  const missing: number[] = [];
  for (let t = fireTimes.after(from); due(t) && missing.length < MAX_CATCH_UP; t = fireTimes.after(t)) {
    if (!range.have?.has(t)) missing.push(t);
  }
  return options.catchUp === 'latest' ? missing.slice(-1) : missing;
}
