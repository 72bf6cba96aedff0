import { NodeProcess } from './harness/processes.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

interface Line {
  identity: string;
  event: 'ready' | 'leader' | 'run';
  leader?: boolean;
  at?: number;
  start?: number;
  end?: number;
  token?: string;
}

const parse = (p: NodeProcess): Line[] => p.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

function replica(identity: string, mode: 'leader' | 'singleton', ttl: number, offsetMs = 0, minHoldMs?: number) {
  const args = [etcd.endpoint, identity, String(offsetMs), mode, String(ttl)];
  return new NodeProcess('test/workers/cron-worker.mjs', minHoldMs === undefined ? args : [...args, String(minHoldMs)]);
}

async function stopAll(replicas: NodeProcess[]) {
  for (const r of replicas) r.send('stop');
  await Promise.all(replicas.map((r) => r.exited));
}

/** The real-clock window the observation covers. */
const windowOf = (runs: Line[], from: number, to: number) => runs.filter((r) => (r.start as number) >= from && (r.start as number) < to);

describe('cron jobs across OS processes', () => {
  it('a SIGKILLed leader is replaced within TTL + 1 s, and the leader-only cron never runs on two replicas in one second', async () => {
    const ttl = 2;
    const replicas = ['a', 'b', 'c'].map((id) => replica(id, 'leader', ttl));
    const isLeaderLine = (l: string) => l.includes('"event":"leader"') && l.includes('"leader":true');
    const first = await Promise.race(replicas.map((r) => r.line(isLeaderLine).then(() => r)));
    const others = replicas.filter((r) => r !== first);
    const from = others.map((r) => r.lines.length);
    await first.line((l) => l.includes('"event":"run"'));
    const killedAt = performance.timeOrigin + performance.now();
    first.kill('SIGKILL');
    const next = await Promise.race(others.map((r, i) => r.line(isLeaderLine, from[i]).then(() => r)));
    const electedAt = parse(next).filter((l) => l.event === 'leader' && l.leader).pop()?.at as number;
    expect(electedAt - killedAt).toBeLessThan((ttl + 1) * 1000);
    await next.line((l) => l.includes('"event":"run"'), next.lines.length);
    await stopAll(others);

    const runs = replicas.flatMap(parse).filter((l) => l.event === 'run');
    const bySecond = new Map<number, Set<string>>();
    for (const run of runs) {
      const second = Math.floor((run.start as number) / 1000);
      bySecond.set(second, (bySecond.get(second) ?? new Set()).add(run.identity));
    }
    for (const identities of bySecond.values()) expect(identities.size).toBe(1);
  });

  it('@Singleton cron with minHoldMs runs exactly once per tick on replicas whose clocks differ by 0.45 s and 0.9 s', async () => {
    const replicas = [
      replica('a', 'singleton', 5, 0, 950),
      replica('b', 'singleton', 5, 450, 950),
      replica('c', 'singleton', 5, 900, 950),
    ];
    await Promise.all(replicas.map((r) => r.line((l) => l.includes('"event":"ready"'))));
    const from = performance.timeOrigin + performance.now() + 1000;
    // Observe six ticks after every replica is up; the window is the behaviour under test.
    await new Promise((resolve) => setTimeout(resolve, 7000));
    await stopAll(replicas);

    const runs = windowOf(replicas.flatMap(parse).filter((l) => l.event === 'run'), from, from + 6000)
      .sort((x, y) => (x.start as number) - (y.start as number));
    expect(runs.length).toBeGreaterThanOrEqual(5);
    expect(runs.length).toBeLessThanOrEqual(7);
    for (let i = 1; i < runs.length; i++) {
      const [prev, run] = [runs[i - 1], runs[i]];
      // Never two at once, never two in one tick: consecutive runs start at least minHoldMs apart.
      expect(run.start as number).toBeGreaterThanOrEqual(prev.end as number);
      expect((run.start as number) - (prev.start as number)).toBeGreaterThanOrEqual(940);
      expect(BigInt(run.token as string)).toBeGreaterThan(BigInt(prev.token as string));
    }
  });
});
