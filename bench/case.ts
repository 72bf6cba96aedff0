import type { Etcd3 } from 'etcd3';

export interface BenchContext {
  readonly endpoints: string[];
  /** A plain etcd3 client: the peers' client, and ours for setup. */
  readonly client: Etcd3;
  /** `--quick`: fewer iterations, for a smoke run; numbers are then rough. */
  readonly quick: boolean;
}

export interface CaseResult {
  readonly id: string;
  readonly title: string;
  readonly target: string;
  /** Whether the target was met in this run; null when the case has no pass/fail target. */
  readonly met: boolean | null;
  /** One line for the table. */
  readonly result: string;
  readonly metrics: Record<string, unknown>;
  /** Latency samples in ms by series, for the chart. */
  readonly latencies?: Record<string, number[]>;
  /** Charts of the case's own, by file name (`<name>.svg`), written next to the JSON. */
  readonly charts?: Record<string, string>;
}

/** `n`, or a tenth of it (at least `min`) in a quick run. */
export function scaled(ctx: BenchContext, n: number, min = 1): number {
  return ctx.quick ? Math.max(min, Math.round(n / 10)) : n;
}

export const fmt = (ms: number): string => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
