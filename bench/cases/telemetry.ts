import { LeaderElectionService, LockService } from 'nestjs-etcd-lock';
import { filter, firstValueFrom } from 'rxjs';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { compare } from '../measure.js';
import { GuardedJobs } from './decorators.js';

/** ns per call of `fn`, over `n` calls. */
function nsPerCall(n: number, fn: () => unknown): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - started) / n;
}

/**
 * The cost of telemetry when the app has `@opentelemetry/api` but registered no SDK (the API is a no-op): the
 * same work by an instance with telemetry on and one with it off, interleaved. This process loads the API (it is a
 * dev dependency here) and registers no provider.
 */
export async function telemetryOverhead(ctx: BenchContext): Promise<CaseResult> {
  // Instances differ by a few % by creation order alone (measured with telemetry off in all): one with telemetry
  // on between two with it off, compared with their mean.
  const offA = await startApp(ctx.endpoints, { identity: 'otel-off-a', telemetry: { enabled: false } }, [GuardedJobs]);
  const on = await startApp(ctx.endpoints, { identity: 'otel-on' }, [GuardedJobs]);
  const off = await startApp(ctx.endpoints, { identity: 'otel-off-b', telemetry: { enabled: false } }, [GuardedJobs]);
  try {
    const [lockA, lockOn, lockOff] = [offA.get(LockService), on.get(LockService), off.get(LockService)];
    const m = await compare(
      ctx.endpoints,
      {
        offA: async () => (await lockA.acquire('bench-otel-off-a')).release(),
        on: async () => (await lockOn.acquire('bench-otel-on')).release(),
        off: async () => (await lockOff.acquire('bench-otel-off')).release(),
      },
      { rounds: 20, perRound: scaled(ctx, 75, 10), warmup: scaled(ctx, 100, 10) },
    );
    const offPerSec = (m.offA.opsPerSec + m.off.opsPerSec) / 2;
    // A @LeaderOnly run on the leader: the hot path a span is added to.
    const runs: Record<'on' | 'off', number[]> = { on: [], off: [] };
    // Every instance campaigns in 'bench-otel' (its @LeaderOnly); each one measured leads alone.
    for (const app of [offA, on, off]) await app.get(LeaderElectionService).resign('bench-otel');
    for (const [label, app] of [
      ['on', on],
      ['off', off],
    ] as const) {
      await app.get(LeaderElectionService).campaign('bench-otel');
      await firstValueFrom(app.get(LeaderElectionService).changes('bench-otel').pipe(filter(Boolean)));
      const jobs = app.get(GuardedJobs);
      const n = scaled(ctx, 200_000, 20_000);
      nsPerCall(n, () => jobs.withTermIn('bench-otel')); // warm-up
      for (let round = 0; round < 5; round++) runs[label].push(nsPerCall(n, () => jobs.withTermIn('bench-otel')));
      await app.get(LeaderElectionService).resign('bench-otel');
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const cycleRatio = m.on.opsPerSec / offPerSec;
    const [runOn, runOff] = [median(runs.on), median(runs.off)];
    return {
      id: 'telemetry',
      title: 'telemetry with @opentelemetry/api and no SDK',
      target: 'no regression: cycles/s within 5% of telemetry off',
      met: cycleRatio >= 0.95,
      result:
        `acquire + release ${m.on.opsPerSec.toFixed(0)}/s on vs ${m.offA.opsPerSec.toFixed(0)} and ${m.off.opsPerSec.toFixed(0)}/s off = ${cycleRatio.toFixed(2)}x ` +
        `(p50 ${fmt(m.on.latency.median)} vs ${fmt(m.off.latency.median)}); a @LeaderOnly run on the leader ` +
        `${runOn.toFixed(0)} ns on vs ${runOff.toFixed(0)} ns off (with no SDK, no span is made)`,
      metrics: {
        cycles: { on: m.on.opsPerSec, offA: m.offA.opsPerSec, offB: m.off.opsPerSec, ratio: cycleRatio },
        leaderRunNs: { on: runOn, off: runOff },
      },
      latencies: { 'acquire+release, telemetry on (no SDK)': m.on.samples, 'acquire+release, telemetry off': m.off.samples },
    };
  } finally {
    await Promise.all([offA.close(), on.close(), off.close()]);
  }
}
