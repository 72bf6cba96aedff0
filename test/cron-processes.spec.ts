import { cronReplica, expectLeaderReplicaFailover, parseLines, stopReplicas } from './harness/cron-replicas.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

describe('cron jobs across OS processes', () => {
  it('a SIGKILLed leader is replaced (failover time reported), and the leader-only cron never runs on two replicas in one second', async () => {
    await expectLeaderReplicaFailover(etcd.endpoint, 2);
  });

  it('@Singleton cron with minHoldMs runs exactly once per tick on replicas whose clocks differ by 0.45 s and 0.9 s', async () => {
    const replicas = [
      cronReplica(etcd.endpoint, 'a', 'singleton', 5, 0, 950),
      cronReplica(etcd.endpoint, 'b', 'singleton', 5, 450, 950),
      cronReplica(etcd.endpoint, 'c', 'singleton', 5, 900, 950),
    ];
    await Promise.all(replicas.map((r) => r.line((l) => l.includes('"event":"ready"'))));
    const from = Date.now();
    // The first six runs after every replica is up, whoever ran them.
    const runsSince = () => replicas.flatMap(parseLines).filter((l) => l.event === 'run' && (l.start as number) >= from);
    while (runsSince().length < 6) await Promise.race(replicas.map((r) => r.line((l) => l.includes('"event":"run"'), r.lines.length)));
    await stopReplicas(replicas);

    const runs = runsSince().sort((x, y) => (x.start as number) - (y.start as number));
    for (let i = 1; i < runs.length; i++) {
      const [prev, run] = [runs[i - 1], runs[i]];
      // Never two at once, never two in one tick: consecutive runs start at least minHoldMs apart.
      expect(run.start as number).toBeGreaterThanOrEqual(prev.end as number);
      expect((run.start as number) - (prev.start as number)).toBeGreaterThanOrEqual(940);
      expect(BigInt(run.token as string)).toBeGreaterThan(BigInt(prev.token as string));
    }
  });
});
