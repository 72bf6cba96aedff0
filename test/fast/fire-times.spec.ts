import { InvalidArgumentError } from '../../lib/errors.js';
import { fireTimesToCatchUp } from '../../lib/scheduling/catch-up.js';
import { cronFireTimes, intervalFireTimes } from '../../lib/scheduling/fire-times.js';

const at = (iso: string) => Date.parse(iso);

describe('fire times (what names a tick on every replica)', () => {
  it('a cron expression: the fire time at or before an instant, and the next one', async () => {
    const every5s = await cronFireTimes({ cron: '*/5 * * * * *' });
    expect(every5s.atOrBefore(at('2026-01-01T00:00:07.300Z'))).toBe(at('2026-01-01T00:00:05Z'));
    expect(every5s.atOrBefore(at('2026-01-01T00:00:05Z'))).toBe(at('2026-01-01T00:00:05Z'));
    expect(every5s.after(at('2026-01-01T00:00:05Z'))).toBe(at('2026-01-01T00:00:10Z'));
    // A daily cron searched back over a day; a timezone moves the instants.
    const daily = await cronFireTimes({ cron: '0 30 2 * * *', timeZone: 'Europe/Paris' });
    expect(daily.atOrBefore(at('2026-01-02T00:00:00Z'))).toBe(at('2026-01-01T01:30:00Z'));
    expect(daily.description).toBe('0 30 2 * * *');
    await expect(cronFireTimes({ cron: 'every day' })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('an interval: every n ms from the epoch, so replicas started at different moments share them', () => {
    const every1500 = intervalFireTimes(1500);
    expect(every1500.atOrBefore(4000)).toBe(3000);
    expect(every1500.after(4000)).toBe(4500);
    expect(every1500.description).toBe('every 1500 ms');
    expect(() => intervalFireTimes(0)).toThrow(InvalidArgumentError);
  });

  it('catch-up: the missed fire times by policy, within the window, leaving out those recorded', () => {
    const everySecond = intervalFireTimes(1000);
    const range = { since: 10_000, until: 15_000, atUntil: true, now: 15_200 };
    expect(fireTimesToCatchUp(everySecond, { catchUp: 'all', catchUpWindowMs: 60_000 }, range)).toEqual([
      11_000, 12_000, 13_000, 14_000, 15_000,
    ]);
    expect(fireTimesToCatchUp(everySecond, { catchUp: 'latest', catchUpWindowMs: 60_000 }, range)).toEqual([15_000]);
    expect(fireTimesToCatchUp(everySecond, { catchUp: 'none', catchUpWindowMs: 60_000 }, range)).toEqual([]);
    // Only within the window before now.
    expect(fireTimesToCatchUp(everySecond, { catchUp: 'all', catchUpWindowMs: 2_500 }, range)).toEqual([13_000, 14_000, 15_000]);
    // Gaps between records: before the newest, not the ones recorded.
    const gaps = { since: 10_000, until: 15_000, atUntil: false, now: 15_200, have: new Set([10_000, 12_000, 15_000]) };
    expect(fireTimesToCatchUp(everySecond, { catchUp: 'all', catchUpWindowMs: 60_000 }, gaps)).toEqual([11_000, 13_000, 14_000]);
    // A job never run has nothing to catch up.
    expect(
      fireTimesToCatchUp(everySecond, { catchUp: 'all', catchUpWindowMs: 60_000 }, { ...range, since: Number.NEGATIVE_INFINITY }),
    ).toEqual([]);
  });
});
