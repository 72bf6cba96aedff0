import { NodeProcess } from './harness/processes.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();
const SHARDS = 6;
const TTL = 2;

interface Line {
  identity: string;
  event: 'ready' | 'owned' | 'run';
  shards?: number[] | Array<{ index: number; token: string }>;
  at?: number;
  start?: number;
}

const replica = (identity: string) =>
  new NodeProcess('test/workers/sharded-cron-worker.mjs', [etcd.endpoint, identity, String(TTL), String(SHARDS), '500']);
const lines = (p: NodeProcess): Line[] => p.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
/** The replica's shards as of its last `owned` line. */
const ownedBy = (p: NodeProcess) =>
  (lines(p)
    .filter((l) => l.event === 'owned')
    .pop()?.shards ?? []) as number[];
/** Waits until the replica prints, from line `from` on, an `owned` line whose shards satisfy `ok`. */
const owns = (p: NodeProcess, ok: (shards: number[]) => boolean, from = 0) =>
  p.line((l) => l.includes('"event":"owned"') && ok((JSON.parse(l) as Line).shards as number[]), from);
/** Waits for the replica's next run line. */
const nextRun = (p: NodeProcess) => p.line((l) => l.includes('"event":"run"'), p.lines.length);
const now = () => performance.timeOrigin + performance.now();

describe('@Sharded cron across OS processes', () => {
  it('every shard is processed once per tick by its owner, across a clean stop; after a crash only the dead one’s shards pause, for at most TTL + 1 s', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map(replica);
    await Promise.all([a, b, c].map((p) => owns(p, (s) => s.length === 2)));
    // Two ticks with all three.
    await nextRun(c);
    const from = Math.floor(now() / 1000) + 1;
    await nextRun(c);
    await nextRun(c);
    // A clean stop 300 ms into a second: c's shards move within that second (after minHoldMs 500 from its run).
    const cShards = ownedBy(c);
    await new Promise((resolve) => setTimeout(resolve, 300)); // the phase of the stop is the scenario
    const marks = [a.lines.length, b.lines.length];
    c.send('stop');
    await c.exited;
    await Promise.all([a, b].map((p, i) => owns(p, (s) => s.length === 3, marks[i])));
    await nextRun(b);
    await nextRun(b);
    // A crash right after b's run: its shards wait for its lease to expire.
    const bShards = ownedBy(b);
    await nextRun(b);
    const killedAt = now();
    const mark = a.lines.length;
    b.kill('SIGKILL');
    await owns(a, (s) => s.length === SHARDS, mark);
    const takenAt = now();
    await nextRun(a);
    await nextRun(a);
    const to = Math.floor(now() / 1000) - 1;
    a.send('stop');
    await a.exited;

    const runs = await etcd.client.getAll().prefix('runs/').keys();
    await etcd.client.delete().prefix('runs/');
    const bySlot = new Map<string, string[]>();
    for (const key of runs) {
      const [, shard, second, identity] = key.split('/');
      const slot = `${shard}@${second}`;
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), identity]);
    }
    const twice = [...bySlot].filter(([, who]) => who.length > 1);
    const missed: string[] = [];
    const pausedOk = (shard: number, second: number) =>
      bShards.includes(shard) && second * 1000 >= killedAt - 1000 && second * 1000 <= takenAt;
    for (let second = from; second <= to; second++) {
      for (let shard = 0; shard < SHARDS; shard++) {
        if (!bySlot.has(`${shard}@${second}`) && !pausedOk(shard, second)) missed.push(`${shard}@${second}`);
      }
    }
    expect({ twice, missed }).toEqual({ twice: [], missed: [] });
    expect(cShards).toHaveLength(2);
    expect(takenAt - killedAt).toBeLessThan((TTL + 1) * 1000);
    expect(to - from).toBeGreaterThanOrEqual(6);
  });
});
