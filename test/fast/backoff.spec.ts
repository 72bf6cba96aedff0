import { Backoff, jittered } from '../../lib/util/backoff.js';

describe('Backoff', () => {
  it('doubles its step up to the maximum, each delay drawn from the upper half of its step', () => {
    const lowest = new Backoff(100, 1000, () => 0);
    const highest = new Backoff(100, 1000, () => 0.999_999);
    const steps = [100, 200, 400, 800, 1000, 1000];
    for (const step of steps) {
      expect(lowest.next()).toBe(step / 2);
      expect(highest.next()).toBeCloseTo(step, 1);
    }
    lowest.reset();
    expect(lowest.next()).toBe(50);
  });

  it('spreads replicas that retry at the same moment (no lock step after an outage)', () => {
    const replicas = Array.from({ length: 50 }, () => new Backoff(250, 5000));
    const firstDelays = new Set(replicas.map((backoff) => Math.round(backoff.next())));
    expect(firstDelays.size).toBeGreaterThan(25);
    for (const delay of firstDelays) {
      expect(delay).toBeGreaterThanOrEqual(125);
      expect(delay).toBeLessThanOrEqual(250);
    }
  });

  it('jittered(ms) is a fixed interval drawn from [ms/2, ms]', () => {
    expect(jittered(500, () => 0)).toBe(250);
    expect(jittered(500, () => 0.5)).toBe(375);
  });
});
