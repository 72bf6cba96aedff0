import { received, requestsByMethod, total } from './etcd-metrics.js';
import { type Summary, summarize } from './stats.js';

export interface Measured {
  /** Operations per second over the measured blocks. */
  readonly opsPerSec: number;
  readonly latency: Summary;
  /** Per-operation latencies in ms, for the chart. */
  readonly samples: number[];
  /** etcd requests received per operation, by method (etcd's own metrics). */
  readonly requestsPerOp: Record<string, number>;
  readonly requestsPerOpTotal: number;
}

export interface CompareOptions {
  /** Rounds; each runs every contender once, in turn, so a noisy moment hurts all of them alike. */
  rounds: number;
  perRound: number;
  /** Operations per contender before measuring. */
  warmup: number;
}

/**
 * Runs each contender's operation `rounds × perRound` times, interleaved, after a warm-up. Requests are counted
 * in a pass of their own: reading etcd's metrics between timed blocks would slow the block after it.
 */
export async function compare(
  endpoints: readonly string[],
  contenders: Record<string, () => Promise<unknown>>,
  { rounds, perRound, warmup }: CompareOptions,
): Promise<Record<string, Measured>> {
  const names = Object.keys(contenders);
  for (const name of names) for (let i = 0; i < warmup; i++) await contenders[name]();
  const requests = new Map<string, Record<string, number>>();
  for (const name of names) {
    const before = await requestsByMethod(endpoints);
    for (let i = 0; i < perRound; i++) await contenders[name]();
    requests.set(name, received(before, await requestsByMethod(endpoints)));
  }
  const timed = new Map(names.map((name) => [name, { ms: 0, samples: [] as number[] }]));
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      const entry = timed.get(name) as { ms: number; samples: number[] };
      const started = performance.now();
      for (let i = 0; i < perRound; i++) {
        const t = performance.now();
        await contenders[name]();
        entry.samples.push(performance.now() - t);
      }
      entry.ms += performance.now() - started;
    }
  }
  const result: Record<string, Measured> = {};
  for (const [name, { ms, samples }] of timed) {
    const counted = requests.get(name) ?? {};
    const perOp = Object.fromEntries(Object.entries(counted).map(([m, c]) => [m, Number((c / perRound).toFixed(2))]));
    result[name] = {
      opsPerSec: samples.length / (ms / 1000),
      latency: summarize(samples),
      samples,
      requestsPerOp: perOp,
      requestsPerOpTotal: Number((total(counted) / perRound).toFixed(2)),
    };
  }
  return result;
}
