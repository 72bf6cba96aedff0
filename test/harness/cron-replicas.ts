import { once } from 'node:events';
import { Etcd3 } from 'etcd3';
import { NodeProcess } from './processes.js';

/** A JSON line printed by `test/workers/cron-worker.mjs`. Times are real-clock milliseconds. */
export interface CronLine {
  identity: string;
  event: 'ready' | 'leader' | 'run' | 'session-lost';
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

/** What scenario 10 saw: times are real-clock milliseconds. */
export interface LeaderFailover {
  /** From the SIGKILL to etcd deleting the dead leader's key (its lease expired): etcd's part. */
  expiryMs: number;
  /** From that deletion (as this process's watch heard it) to a survivor saying it leads: ours. */
  electionMs: number;
  /** Whether etcd's raft leader changed meanwhile: etcd 3.4 then renews every lease to its full TTL. */
  raftLeaderChanged: boolean;
  /**
   * Whether a survivor lost its own session meanwhile (a CPU-starved process misses its keepalives): its old key,
   * possibly first in line, then blocks the election until etcd lets that lease go.
   */
  survivorLostSession: boolean;
  /** Which replicas ran in each second. */
  runnersPerSecond: number[];
}

/**
 * Fault scenario 10: three replicas run a leader-only per-second cron; the leader is SIGKILLed once it has run.
 * A watch of our own sees when etcd deletes the dead leader's key, so that etcd's part (the lease expiring) and
 * ours (electing a survivor) are measured apart.
 */
export async function killLeaderReplica(endpoints: string | readonly string[], ttl: number): Promise<LeaderFailover> {
  const client = new Etcd3({ hosts: [endpoints].flat() });
  const deletions: { key: string; at: number }[] = [];
  const watcher = await client.watch().prefix('election/').create();
  watcher.on('delete', (kv) => deletions.push({ key: kv.key.toString(), at: performance.timeOrigin + performance.now() }));
  const raftTerm = async () => (await client.maintenance.status()).raftTerm;
  try {
    const replicas = ['a', 'b', 'c'].map((id) => cronReplica(endpoints, id, 'leader', ttl));
    const isLeaderLine = (l: string) => l.includes('"event":"leader"') && l.includes('"leader":true');
    const first = await Promise.race(replicas.map((r) => r.line(isLeaderLine).then(() => r)));
    const others = replicas.filter((r) => r !== first);
    const from = others.map((r) => r.lines.length);
    await first.line((l) => l.includes('"event":"run"'));
    const termBefore = await raftTerm();
    const killedAt = performance.timeOrigin + performance.now();
    first.kill('SIGKILL');
    const next = await Promise.race(others.map((r, i) => r.line(isLeaderLine, from[i]).then(() => r)));
    const electedAt = parseLines(next)
      .filter((l) => l.event === 'leader' && l.leader)
      .pop()?.at as number;
    const termAfter = await raftTerm();
    // Let the new leader run once, so that its runs are part of what is checked.
    await next.line((l) => l.includes('"event":"run"'), next.lines.length);
    await stopReplicas(others);
    // The survivors deleted theirs; a key of the killed replica goes when its lease expires: it is gone already if
    // the replica led when killed, not if it had lost its session under load and queued again on a new lease.
    for (;;) {
      const heard = deletions.length;
      if ((await client.getAll().prefix('election/').keys()).length === 0) break;
      if (deletions.length === heard) await once(watcher, 'delete');
    }

    // The first deletion after the kill is the dead leader's key (the survivors only delete theirs at stop).
    const deletedAt = deletions.find((d) => d.at >= killedAt)?.at as number;
    const bySecond = new Map<number, Set<string>>();
    for (const run of replicas.flatMap(parseLines).filter((l) => l.event === 'run')) {
      const second = Math.floor((run.start as number) / 1000);
      bySecond.set(second, (bySecond.get(second) ?? new Set()).add(run.identity));
    }
    const lostAt = others.flatMap(parseLines).filter((l) => l.event === 'session-lost' && (l.at as number) >= killedAt - ttl * 1000);
    return {
      expiryMs: deletedAt - killedAt,
      electionMs: electedAt - deletedAt,
      raftLeaderChanged: termAfter !== termBefore,
      survivorLostSession: lostAt.some((l) => (l.at as number) <= electedAt),
      runnersPerSecond: [...bySecond.values()].map((s) => s.size),
    };
  } finally {
    await watcher.cancel();
    client.close();
  }
}

/**
 * Scenario 10 with its expected outcome: a survivor leads, and no second ever has two runners (the safety
 * property, asserted). How long the failover took is reported, split into etcd's part (the lease expiring) and
 * ours (a survivor leading after the deletion); it is measured under control in the bench (`crash-failover`), not
 * bounded here: a wall-clock bound failed in CI on a loaded runner (once 6.1 s, once 5.8 s of "our part" with no
 * session lost), which a timed test cannot tell from a fault.
 */
export async function expectLeaderReplicaFailover(endpoints: string | readonly string[], ttl: number): Promise<void> {
  const { expiryMs, electionMs, raftLeaderChanged, survivorLostSession, runnersPerSecond } = await killLeaderReplica(endpoints, ttl);
  console.log(
    `leader replica killed: its key deleted by etcd after ${expiryMs.toFixed(0)} ms (TTL ${ttl} s${raftLeaderChanged ? ', raft leader changed meanwhile' : ''}), a survivor led ${electionMs.toFixed(0)} ms later${survivorLostSession ? ' (a survivor lost its session meanwhile)' : ''}`,
  );
  expect(runnersPerSecond.length).toBeGreaterThan(1);
  for (const runners of runnersPerSecond) expect(runners).toBe(1);
}
