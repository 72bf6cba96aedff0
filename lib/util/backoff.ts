/**
 * Exponential backoff with jitter between `minMs` and `maxMs`, the one used by every retry loop: `next()` is the
 * delay to wait now (and doubles the following one), `reset()` starts over after a success. Equal jitter: each
 * delay is drawn from the upper half of its step, [d/2, d]. After an etcd outage every replica retries against
 * the same cluster at once: without jitter they would re-grant, reconnect and rejoin in lock step, and every
 * retry would land on etcd as one burst.
 */
export class Backoff {
  private step: number;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    /** A number in [0, 1): `Math.random` (tests pass their own). */
    private readonly random: () => number = Math.random,
  ) {
    this.step = minMs;
  }

  next(): number {
    const step = this.step;
    this.step = Math.min(this.step * 2, this.maxMs);
    return step / 2 + this.random() * (step / 2);
  }

  reset(): void {
    this.step = this.minMs;
  }
}

/** A fixed retry interval `ms`, jittered as `Backoff` does: drawn from [ms/2, ms]. */
export function jittered(ms: number, random: () => number = Math.random): number {
  return ms / 2 + random() * (ms / 2);
}
