import type { INestApplicationContext } from '@nestjs/common';
import { LeaderElectionService } from 'nestjs-etcd-lock';
import { filter, firstValueFrom } from 'rxjs';
import { NodeProcess } from '../../test/harness/processes.js';
import { now } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { summarize } from '../stats.js';

const WORKER = 'build/bench/worker.js';

function worker(ctx: BenchContext, role: string, identity: string, ...args: Array<string | number>): NodeProcess {
  return new NodeProcess(WORKER, [role, ctx.endpoints.join(','), identity, ...args.map(String)]);
}

const parse = <T>(p: NodeProcess, event: string): T => JSON.parse(p.lines.find((l) => l.includes(`"event":"${event}"`)) as string) as T;

async function startAll(processes: NodeProcess[]): Promise<void> {
  await Promise.all(processes.map((p) => p.line((l) => l.includes('"event":"ready"'))));
  for (const p of processes) p.send('go');
  await Promise.all(processes.map((p) => p.line((l) => l.includes('"event":"done"'))));
}

async function stopAll(processes: NodeProcess[]): Promise<void> {
  for (const p of processes) p.send('stop');
  await Promise.all(processes.map((p) => p.exited));
}

/** Two processes pass one lock back and forth: time from the holder's release() to the waiter holding it. */
export async function handover(ctx: BenchContext): Promise<CaseResult> {
  const cycles = scaled(ctx, 1000, 100);
  const pair = [worker(ctx, 'pingpong', 'ping', cycles), worker(ctx, 'pingpong', 'pong', cycles)];
  await startAll(pair);
  await stopAll(pair);
  const events = pair
    .flatMap((p) =>
      parse<{ identity: string; events: Array<[number, number, number]> }>(p, 'done').events.map(([token, acquiredAt, releasedAt]) => ({
        who: p,
        token,
        acquiredAt,
        releasedAt,
      })),
    )
    .sort((a, b) => a.token - b.token);
  const samples: number[] = [];
  const warmup = Math.floor(events.length / 10);
  for (let i = warmup + 1; i < events.length; i++) {
    const [prev, next] = [events[i - 1], events[i]];
    if (prev.who !== next.who) samples.push(next.acquiredAt - prev.releasedAt);
  }
  const s = summarize(samples);
  return {
    id: 'handover',
    title: 'lock handover between two processes',
    target: 'p50 ≤ 3 ms, p99 ≤ 10 ms',
    met: s.median <= 3 && s.p99 <= 10,
    result: `p50 ${fmt(s.median)}, p99 ${fmt(s.p99)} over ${s.n} handovers (release() called → other process holds)`,
    metrics: { latency: s },
    latencies: { 'handover (2 processes)': samples },
  };
}

/** 4 processes × 2 callers contend for one name for a while: acquisitions per process. */
export async function fairness(ctx: BenchContext): Promise<CaseResult> {
  const durationMs = ctx.quick ? 2000 : 8000;
  const group = ['p1', 'p2', 'p3', 'p4'].map((id) => worker(ctx, 'fair', id, 2, durationMs));
  await startAll(group);
  await stopAll(group);
  const counts = group.map((p) => parse<{ count: number }>(p, 'done').count);
  const spread = Math.max(...counts) / Math.min(...counts);
  return {
    id: 'fairness',
    title: '4 processes × 2 callers on one name',
    target: 'no process gets more than 1.5x the share of another',
    met: spread <= 1.5,
    result: `acquisitions per process ${counts.join(' / ')} in ${durationMs / 1000} s: max/min = ${spread.toFixed(2)}`,
    metrics: { counts, maxOverMin: spread, durationMs },
  };
}

/** The leader process is SIGKILLed: time until a standby (here, in this process) leads. */
export async function crashFailover(ctx: BenchContext, standby: INestApplicationContext, ttl: number): Promise<CaseResult> {
  const elections = standby.get(LeaderElectionService);
  const samples: number[] = [];
  const runs = ctx.quick ? 1 : 3;
  for (let i = 0; i < runs; i++) {
    await elections.resign('bench-crash'); // let the new process lead first
    const leader = worker(ctx, 'leader', `crash-${i}`, ttl);
    await leader.line((l) => l.includes('"event":"leader"'));
    const elected = firstValueFrom(elections.changes('bench-crash').pipe(filter(Boolean))); // campaigns behind it
    const killedAt = now();
    leader.kill('SIGKILL');
    await elected;
    samples.push(now() - killedAt);
    await leader.exited;
  }
  await elections.resign('bench-crash');
  const worst = Math.max(...samples);
  return {
    id: 'crash-failover',
    title: `crash failover (leader SIGKILL, TTL ${ttl} s)`,
    target: `≤ TTL + 1 s = ${ttl + 1} s`,
    met: worst <= (ttl + 1) * 1000,
    result: `standby led after ${samples.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(', ')}`,
    metrics: { ttl, failoverMs: samples },
  };
}
