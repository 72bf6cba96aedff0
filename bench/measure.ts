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
  /** Operations per second in each run (see `CompareOptions.runs`), in run order. */
  readonly runOpsPerSec: number[];
}

export interface CompareOptions {
  /** Rounds; each runs every contender once, in turn, so a noisy moment hurts all of them alike. */
  rounds: number;
  perRound: number;
  /** Operations per contender before measuring. */
  warmup: number;
  /**
   * Runs, each of `rounds` rounds: a ratio is judged by its median over the runs (`medianRatio`), not by one
   * block, which a noisy second on a shared machine can move by 20%. Default 1.
   */
  runs?: number;
}

/** `a`'s rate divided by `b`'s, run by run. */
function runRatios(a: Measured, b: Measured): number[] {
  return a.runOpsPerSec.map((ops, i) => ops / b.runOpsPerSec[i]);
}

/** The median over runs of `a`'s rate divided by `b`'s in the same run. */
export function medianRatio(a: Measured, b: Measured): number {
  return summarize(runRatios(a, b)).median;
}

/** The lowest and highest over runs of `a`'s rate divided by `b`'s, as `0.81–0.88x`. */
export function ratioRange(a: Measured, b: Measured): string {
  const ratios = runRatios(a, b);
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}x`;
}

/**
 * Runs each contender's operation `runs × rounds × perRound` times, interleaved, after a warm-up. Requests are counted
 * in a pass of their own: reading etcd's metrics between timed blocks would slow the block after it.
 */
export async function compare(
  endpoints: readonly string[],
  contenders: Record<string, () => Promise<unknown>>,
  { rounds, perRound, warmup, runs = 1 }: CompareOptions,
): Promise<Record<string, Measured>> {
  const names = Object.keys(contenders);
  for (const name of names) for (let i = 0; i < warmup; i++) await contenders[name]();
  const requests = new Map<string, Record<string, number>>();
  for (const name of names) {
    const before = await requestsByMethod(endpoints);
    for (let i = 0; i < perRound; i++) await contenders[name]();
    requests.set(name, received(before, await requestsByMethod(endpoints)));
  }
  const timed = new Map(names.map((name) => [name, { ms: 0, samples: [] as number[], runs: [] as number[] }]));
  for (let run = 0; run < runs; run++) {
    const runMs = new Map(names.map((name) => [name, 0]));
    for (let round = 0; round < rounds; round++) {
      for (const name of names) {
        const entry = timed.get(name) as { ms: number; samples: number[] };
        const started = performance.now();
        for (let i = 0; i < perRound; i++) {
          const t = performance.now();
          await contenders[name]();
          entry.samples.push(performance.now() - t);
        }
        const ms = performance.now() - started;
        entry.ms += ms;
        runMs.set(name, (runMs.get(name) ?? 0) + ms);
      }
    }
    for (const name of names) timed.get(name)?.runs.push((rounds * perRound) / ((runMs.get(name) ?? 0) / 1000));
  }
  const result: Record<string, Measured> = {};
  for (const [name, { ms, samples, runs: runOpsPerSec }] of timed) {
    const counted = requests.get(name) ?? {};
    const perOp = Object.fromEntries(Object.entries(counted).map(([m, c]) => [m, Number((c / perRound).toFixed(2))]));
    result[name] = {
      opsPerSec: samples.length / (ms / 1000),
      latency: summarize(samples),
      samples,
      requestsPerOp: perOp,
      requestsPerOpTotal: Number((total(counted) / perRound).toFixed(2)),
      runOpsPerSec,
    };
  }
  return result;
}
