/**
 * Exponential backoff between `minMs` and `maxMs`, the one used by every retry loop: `next()` is the delay to
 * wait now (and doubles the following one), `reset()` starts over after a success. No jitter: each instance
 * retries against its own etcd connection, and deterministic delays keep the deadline arithmetic readable.
 */
export class Backoff {
  private current: number;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {
    this.current = minMs;
  }

  next(): number {
    const delay = this.current;
    this.current = Math.min(this.current * 2, this.maxMs);
    return delay;
  }

  reset(): void {
    this.current = this.minMs;
  }
}
