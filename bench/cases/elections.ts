import type { INestApplicationContext } from '@nestjs/common';
import type { Campaign } from 'etcd3';
import { LeaderElectionService } from 'nestjs-etcd-lock';
import { filter, firstValueFrom } from 'rxjs';
import { startApp } from '../app.js';
import { type BenchContext, type CaseResult, fmt, scaled } from '../case.js';
import { summarize } from '../stats.js';

/** Setup only (never inside a timed span): until `count` candidates have their key in etcd, plus a moment to settle. */
async function candidates(ctx: BenchContext, prefix: string, count: number): Promise<void> {
  while ((await ctx.client.getAll().prefix(prefix).count()) < count) await settle(5);
  await settle(20);
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Graceful handover, resign() to the standby elected: ours (two instances) against etcd3's Election. */
export async function gracefulLeaderHandover(
  ctx: BenchContext,
  apps: [INestApplicationContext, INestApplicationContext],
): Promise<CaseResult> {
  const rounds = scaled(ctx, 60, 6);
  const name = 'bench-graceful';
  let [leader, standby] = apps.map((a) => a.get(LeaderElectionService));
  await leader.campaign(name);
  const ours: number[] = [];
  for (let i = 0; i < rounds; i++) {
    void standby.campaign(name);
    await candidates(ctx, `election/${name}/`, 2);
    const elected = firstValueFrom(standby.changes(name).pipe(filter(Boolean)));
    const t0 = performance.now();
    await leader.resign(name);
    await elected;
    ours.push(performance.now() - t0);
    [leader, standby] = [standby, leader];
  }
  await leader.resign(name);

  const election = ctx.client.election('bench-etcd3', 10);
  let current: Campaign = election.campaign('a');
  await current.wait();
  const peer: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const next = election.campaign(i % 2 ? 'a' : 'b');
    await candidates(ctx, 'election/bench-etcd3/', 2);
    const elected = next.wait();
    const t0 = performance.now();
    await current.resign();
    await elected;
    peer.push(performance.now() - t0);
    current = next;
  }
  await current.resign();

  const closeSamples = await closeToElected(ctx, scaled(ctx, 5, 2));
  const [o, p, c] = [summarize(ours), summarize(peer), summarize(closeSamples)];
  const ratio = o.median / p.median;
  return {
    id: 'graceful-leader',
    title: 'graceful leader handover (resign → standby elected)',
    target: '≤ 1/10 of etcd3 Election resign-to-elected',
    met: ratio <= 0.1,
    result:
      `p50 ${fmt(o.median)} (p99 ${fmt(o.p99)}); etcd3 Election p50 ${fmt(p.median)} (p99 ${fmt(p.p99)}) = ` +
      `${ratio.toFixed(2)}x; app.close() → standby elected p50 ${fmt(c.median)}`,
    metrics: { ours: o, etcd3Election: p, appCloseToElected: c, medianRatio: ratio },
    latencies: { 'resign → elected': ours, 'etcd3 Election resign → elected': peer },
  };
}

/** app.close() of the leader instance to the standby elected (includes Nest's own shutdown). */
async function closeToElected(ctx: BenchContext, runs: number): Promise<number[]> {
  const samples: number[] = [];
  const name = 'bench-close';
  for (let i = 0; i < runs; i++) {
    const leaderApp = await startApp(ctx.endpoints, { identity: `closing-${i}` });
    await leaderApp.get(LeaderElectionService).campaign(name);
    const standbyApp = await startApp(ctx.endpoints, { identity: `standby-${i}` });
    const standby = standbyApp.get(LeaderElectionService);
    const elected = firstValueFrom(standby.changes(name).pipe(filter(Boolean)));
    await candidates(ctx, `election/${name}/`, 2);
    const t0 = performance.now();
    await leaderApp.close();
    await elected;
    samples.push(performance.now() - t0);
    await standbyApp.close();
  }
  return samples;
}

/**
 * `transfer` to a chosen candidate (three instances: the leader hands to the third, skipping the second) against
 * `resign` (to the next in line), call to the new leader's term, and what each asks of etcd.
 */
export async function leadershipTransfer(ctx: BenchContext): Promise<CaseResult> {
  const rounds = scaled(ctx, 100, 10);
  const name = 'bench-transfer';
  const apps = [];
  for (const identity of ['t-a', 't-b', 't-c']) apps.push(await startApp(ctx.endpoints, { identity }));
  const services = apps.map((a) => a.get(LeaderElectionService));
  try {
    await services[0].campaign(name);
    for (const s of services.slice(1)) void s.campaign(name);
    await candidates(ctx, `election/${name}/`, 3);
    const byIdentity = new Map(services.map((s, i) => [['t-a', 't-b', 't-c'][i], s]));
    const samples: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await candidates(ctx, `election/${name}/`, 3);
      const leaderId = (await services[0].inspect(name)).holders[0].value;
      const last = (await services[0].inspect(name)).waiters.at(-1)?.value as string;
      const chosen = byIdentity.get(last) as LeaderElectionService;
      const elected = firstValueFrom(chosen.changes(name).pipe(filter(Boolean)));
      const t0 = performance.now();
      await (byIdentity.get(leaderId) as LeaderElectionService).transfer(name, last);
      await elected;
      samples.push(performance.now() - t0);
    }
    const s = summarize(samples);
    return {
      id: 'transfer',
      title: 'leadership transfer to the last candidate (skipping the one between)',
      target: 'reported (a read, two guarded transactions and a re-read; resign is one delete)',
      met: null,
      result: `p50 ${fmt(s.median)} (p99 ${fmt(s.p99)}) over ${rounds} transfers`,
      metrics: { transfer: s },
      latencies: { 'transfer → chosen elected': samples },
    };
  } finally {
    await Promise.all(services.map((s) => s.resign(name)));
    await Promise.all(apps.map((a) => a.close()));
  }
}
