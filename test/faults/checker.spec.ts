import { Etcd3 } from 'etcd3';
import { EtcdCluster } from '../harness/cluster.js';
import { checkHistory, type Operation, overlaps } from '../harness/history.js';
import { NodeProcess, killAll } from '../harness/processes.js';

describe('mutual-exclusion checker (Jepsen-style)', () => {
  it('sees a violation in a history that has one (the checker is not blind)', () => {
    const base = { identity: 'a', ok: true };
    const overlapping: Operation[] = [
      { ...base, token: '10', start: 0, end: 50, fencedRead: 0 },
      { ...base, identity: 'b', token: '12', start: 20, end: 60, fencedRead: 1 },
    ];
    expect(checkHistory(overlapping, 2, 2, 2).fencedViolations).toEqual(['a (token 10) and b (token 12) overlapped']);
    const lostUpdate: Operation[] = [
      { ...base, token: '10', start: 0, end: 5, fencedRead: 0 },
      { ...base, token: '12', start: 6, end: 9, fencedRead: 0 },
    ];
    expect(checkHistory(lostUpdate, 1, 1, 2).fencedViolations).toEqual([
      'fenced counter is 1 but 2 increments were acknowledged (0 indeterminate)',
      'token 12 (a) read 0, but an earlier holder had written 1',
    ]);
    expect(checkHistory(lostUpdate, 1, 1, 2).unfencedLost).toBe(1);
    // A write nobody heard back about may have been applied: one gap is allowed per indeterminate operation.
    const gap: Operation[] = [
      { ...base, token: '10', start: 0, end: 5, fencedRead: 0 },
      { ...base, token: '14', start: 8, end: 9, fencedRead: 2 },
    ];
    expect(checkHistory(gap, 3, 3, 3, 1).fencedViolations).toEqual([]);
    expect(checkHistory(gap, 3, 3, 3, 0).fencedViolations).toHaveLength(2);
    // A leader's term makes many operations under one token; another holder with that token is a violation.
    const term: Operation[] = [
      { ...base, token: '10', seq: 0, start: 0, end: 5, fencedRead: 0 },
      { ...base, token: '10', seq: 1, start: 6, end: 9, fencedRead: 1 },
    ];
    expect(checkHistory(term, 2, 2, 2).fencedViolations).toEqual([]);
    expect(checkHistory([term[0], { ...term[1], identity: 'b' }], 2, 2, 2).fencedViolations).toEqual(['token 10 given twice']);
    expect(overlaps(overlapping)).toBe(1);
    expect(overlaps(term)).toBe(0);
  });

  it('4 client processes under a nemesis (pause holders, kill clients, kill etcd members): no fenced violation', async () => {
    const result = await underNemesis({
      worker: 'test/workers/checker-worker.mjs',
      holders: 'lock/jepsen/',
      counters: ['checker/fenced', 'checker/unfenced'],
    });
    expect(result.report.fencedViolations).toEqual([]);
    expect(result.report.acknowledged).toBeGreaterThan(20);
    expect(result.faults.length).toBeGreaterThanOrEqual(7); // a pause finds no holder when the lock changes hands
  }, 120_000);

  it('leaders writing through term.fencedTxn() under the same nemesis: no fenced violation (the unfenced control is reported)', async () => {
    const result = await underNemesis({
      worker: 'test/workers/leader-checker-worker.mjs',
      holders: 'election/jepsen-leader/',
      counters: ['checker/leader-fenced', 'checker/leader-unfenced'],
    });
    expect(result.report.fencedViolations).toEqual([]);
    expect(result.report.acknowledged).toBeGreaterThan(20);
    // More than one term, or the nemesis never deposed a leader.
    expect(new Set(result.ops.filter((o) => o.ok).map((o) => o.token)).size).toBeGreaterThan(2);
    expect(result.faults.length).toBeGreaterThanOrEqual(7);
  }, 120_000);

  it('sharded work written through each shard’s fencedTxn() under the same nemesis: no fenced violation on any shard', async () => {
    const result = await underNemesis({
      worker: 'test/workers/shard-checker-worker.mjs',
      holders: 'shard/jepsen-shards/0/',
      counters: ['checker/shard-fenced', 'checker/shard-unfenced'],
      shards: 4,
    });
    expect(result.report.fencedViolations).toEqual([]);
    expect(result.report.acknowledged).toBeGreaterThan(40);
    // Shards changed hands, or the nemesis never moved one.
    expect(new Set(result.ops.filter((o) => o.ok && o.shard === 0).map((o) => o.token)).size).toBeGreaterThan(2);
    expect(result.faults.length).toBeGreaterThanOrEqual(7);
  }, 120_000);
});

interface Workload {
  /** The worker script: one JSON line per operation. */
  worker: string;
  /** Where the holder's key is (the oldest key under it holds). */
  holders: string;
  /** The fenced and the unfenced counter (with `-<shard>` appended per shard when `shards` is given). */
  counters: [string, string];
  /** Sharded workload: operations carry `shard`, and each shard's history is checked on its own. */
  shards?: number;
}

/**
 * Runs 4 worker processes on a 3-member cluster under a nemesis (nine faults, one every 1.2 s, each kind three
 * times: pause the holder past its TTL, kill a client, kill an etcd member), then checks the history.
 */
async function underNemesis({ worker, holders, counters, shards }: Workload) {
  const cluster = await EtcdCluster.start();
  const client = new Etcd3({ hosts: cluster.endpoints });
  const workers: NodeProcess[] = [];
  const faults: string[] = [];
  let next = 0;
  const spawnWorker = () => {
    const w = new NodeProcess(worker, [cluster.endpoints.join(','), `c${next++}`]);
    workers.push(w);
    return w;
  };
  try {
    for (let i = 0; i < 4; i++) spawnWorker();
    for (let round = 0; round < 9; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1200));
      const action = ['pause-holder', 'kill-client', 'kill-member'][round % 3];
      if (action === 'pause-holder') {
        const holder = await client.getAll().prefix(holders).sort('Create', 'Ascend').limit(1).strings();
        const identity = Object.values(holder)[0];
        const w = workers.find((x) => x.child.pid && x.child.exitCode === null && identity === workerIdentity(x));
        if (!w) continue;
        w.child.kill('SIGSTOP');
        faults.push(`paused holder ${identity}`);
        await new Promise((resolve) => setTimeout(resolve, 3500)); // past its 2 s TTL
        w.child.kill('SIGCONT');
      } else if (action === 'kill-client') {
        const alive = workers.filter((x) => x.child.exitCode === null && x.child.signalCode === null);
        const victim = alive[Math.floor(Math.random() * alive.length)];
        if (!victim) continue;
        victim.kill('SIGKILL');
        faults.push(`killed client ${workerIdentity(victim)}`);
        spawnWorker();
      } else {
        const member = cluster.members[Math.floor(Math.random() * 3)];
        await member.stop('SIGKILL');
        faults.push(`killed etcd ${member.spec.name}`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await cluster.restart(member);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1000)); // let the last recoveries run
    const alive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    for (const w of alive) w.send('stop');
    // Bounded, and the timer is cleared once all exited, so jest has nothing left to wait for.
    let timer: NodeJS.Timeout | undefined;
    const stuck = await Promise.race([
      Promise.all(alive.map((w) => w.exited)).then(() => []),
      new Promise<string[]>((resolve) => {
        timer = setTimeout(() => resolve(alive.filter((w) => w.child.exitCode === null).map(workerIdentity)), 30_000);
      }),
    ]);
    clearTimeout(timer);
    for (const id of stuck) {
      const w = workers.find((x) => workerIdentity(x) === id) as NodeProcess;
      console.log(`stuck ${id}: ${w.lines.length} lines, last: ${w.lines.slice(-2).join(' | ')}; faults: ${faults.join(', ')}`);
    }
    expect(stuck).toEqual([]);

    const ops = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Operation & { unfenced: boolean; shard?: number }),
    );
    const killed = faults.filter((f) => f.startsWith('killed client')).length;
    const unknown = ops.filter((o) => o.outcome === 'unknown').length;
    const reports = [];
    let overlapping = 0;
    for (const shard of shards === undefined ? [undefined] : [...Array(shards).keys()]) {
      const mine = ops.filter((o) => o.shard === shard);
      const [fencedKey, unfencedKey] = shard === undefined ? counters : counters.map((c) => `${c}-${shard}`);
      const finalFenced = Number((await client.get(fencedKey).string()) ?? '0');
      const finalUnfenced = Number((await client.get(unfencedKey).string()) ?? '0');
      overlapping += overlaps(mine);
      const indeterminate = killed + mine.filter((o) => o.outcome === 'unknown').length;
      const report = checkHistory(mine, finalFenced, finalUnfenced, mine.filter((o) => o.unfenced).length, indeterminate);
      reports.push({ ...report, fencedViolations: report.fencedViolations.map((v) => (shard === undefined ? v : `shard ${shard}: ${v}`)) });
    }
    const report = {
      operations: ops.length,
      acknowledged: reports.reduce((n, r) => n + r.acknowledged, 0),
      fencedViolations: reports.flatMap((r) => r.fencedViolations),
      unfencedLost: reports.reduce((n, r) => n + r.unfencedLost, 0),
    };
    console.log(
      `checker (${worker}): ${report.operations} operations, ${report.acknowledged} acknowledged; faults: ${faults.join(', ')}; ` +
        `${unknown} indeterminate; fenced violations: ${report.fencedViolations.length} ${report.fencedViolations.slice(0, 3).join('; ')}; ` +
        `unfenced control: ${overlapping} overlapping operations of different holders, ${report.unfencedLost} lost updates`,
    );
    return { report, ops, faults };
  } finally {
    await killAll();
    // Killed workers' leases would expire in 2 s; revoke them so the cluster is left empty now.
    const { leases } = await client.leaseClient.leaseLeases({});
    for (const lease of leases) await client.leaseClient.leaseRevoke({ ID: lease.ID });
    await client.delete().all();
    expect(await client.getAll().keys()).toEqual([]);
    client.close();
    await cluster.destroy();
  }
}

function workerIdentity(w: NodeProcess): string {
  return w.child.spawnargs[w.child.spawnargs.length - 1];
}
