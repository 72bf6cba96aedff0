import { NodeProcess } from './processes.js';

/** A JSON line printed by `test/workers/cron-worker.mjs`. Times are real-clock milliseconds. */
export interface CronLine {
  identity: string;
  event: 'ready' | 'leader' | 'run';
  leader?: boolean;
  at?: number;
  start?: number;
  end?: number;
  token?: string;
}

export const parseLines = (p: NodeProcess): CronLine[] => p.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as CronLine);

/** A replica process with a per-second `@Cron` guarded by `@LeaderOnly()` or `@Singleton('tick')`. */
export function cronReplica(
  endpoints: string | readonly string[],
  identity: string,
  mode: 'leader' | 'singleton',
  ttl: number,
  offsetMs = 0,
  minHoldMs?: number,
): NodeProcess {
  const args = [[endpoints].flat().join(','), identity, String(offsetMs), mode, String(ttl)];
  return new NodeProcess('test/workers/cron-worker.mjs', minHoldMs === undefined ? args : [...args, String(minHoldMs)]);
}

export async function stopReplicas(replicas: NodeProcess[]): Promise<void> {
  for (const r of replicas) r.send('stop');
  await Promise.all(replicas.map((r) => r.exited));
}

/**
 * Fault scenario 10: three replicas run a leader-only per-second cron; the leader is SIGKILLed once it has run.
 * Returns how long after the kill a survivor was elected, and which replicas ran in each second.
 */
export async function killLeaderReplica(
  endpoints: string | readonly string[],
  ttl: number,
): Promise<{ failoverMs: number; runnersPerSecond: number[] }> {
  const replicas = ['a', 'b', 'c'].map((id) => cronReplica(endpoints, id, 'leader', ttl));
  const isLeaderLine = (l: string) => l.includes('"event":"leader"') && l.includes('"leader":true');
  const first = await Promise.race(replicas.map((r) => r.line(isLeaderLine).then(() => r)));
  const others = replicas.filter((r) => r !== first);
  const from = others.map((r) => r.lines.length);
  await first.line((l) => l.includes('"event":"run"'));
  const killedAt = performance.timeOrigin + performance.now();
  first.kill('SIGKILL');
  const next = await Promise.race(others.map((r, i) => r.line(isLeaderLine, from[i]).then(() => r)));
  const electedAt = parseLines(next)
    .filter((l) => l.event === 'leader' && l.leader)
    .pop()?.at as number;
  // Let the new leader run once, so that its runs are part of what is checked.
  await next.line((l) => l.includes('"event":"run"'), next.lines.length);
  await stopReplicas(others);

  const bySecond = new Map<number, Set<string>>();
  for (const run of replicas.flatMap(parseLines).filter((l) => l.event === 'run')) {
    const second = Math.floor((run.start as number) / 1000);
    bySecond.set(second, (bySecond.get(second) ?? new Set()).add(run.identity));
  }
  return { failoverMs: electedAt - killedAt, runnersPerSecond: [...bySecond.values()].map((s) => s.size) };
}

/** Scenario 10 with its expected outcome: a survivor leads within TTL + 1 s, and no second has two runners. */
export async function expectLeaderReplicaFailover(endpoints: string | readonly string[], ttl: number): Promise<void> {
  const { failoverMs, runnersPerSecond } = await killLeaderReplica(endpoints, ttl);
  expect(failoverMs).toBeLessThan((ttl + 1) * 1000);
  expect(runnersPerSecond.length).toBeGreaterThan(1);
  for (const runners of runnersPerSecond) expect(runners).toBe(1);
}
