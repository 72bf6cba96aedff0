import { NodeProcess } from './harness/processes.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

describe('mutual exclusion across OS processes', () => {
  it('3 processes increment a shared counter 200 times with no lost update and increasing fencing tokens', async () => {
    const shares = [67, 67, 66];
    const workers = shares.map((n, i) => new NodeProcess('test/workers/counter-worker.mjs', [etcd.endpoint, String(n), `p${i}`]));
    await Promise.all(workers.map((w) => w.line((l) => l === 'ready')));
    for (const w of workers) w.send('go');
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0]);

    expect(await etcd.client.get('counter').string()).toBe('200');
    const writes = workers
      .flatMap((w) => w.lines.filter((l) => l.startsWith('{')))
      .map((l) => JSON.parse(l) as { value: number; token: string; identity: string })
      .sort((a, b) => a.value - b.value);
    expect(writes.map((w) => w.value)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    for (let i = 1; i < writes.length; i++) expect(BigInt(writes[i].token)).toBeGreaterThan(BigInt(writes[i - 1].token));
    // Every process got turns (the queue is fair, not first-come-takes-all).
    expect(new Set(writes.map((w) => w.identity)).size).toBe(3);
    await etcd.client.delete().key('counter');
  });

  it('2 processes take overlapping sets of locks in opposite orders, 1,000 rounds each: no deadlock, never held together', async () => {
    const sets = [
      ['x', 'y', 'z'],
      ['z', 'y', 'w'],
    ];
    const workers = sets.map(
      (names, i) => new NodeProcess('test/workers/multi-lock-worker.mjs', [etcd.endpoint, `m${i}`, names.join(','), '1000']),
    );
    await Promise.all(workers.map((w) => w.line((l) => l === 'ready')));
    for (const w of workers) w.send('go');
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0]);
    const rounds = workers.map((w) => w.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { start: number; end: number }));
    expect(rounds.map((r) => r.length)).toEqual([1000, 1000]);
    // The sets share y and z: no round of one overlaps a round of the other.
    const [first, second] = rounds;
    let j = 0;
    for (const r of first) {
      while (j < second.length && second[j].end <= r.start) j++;
      for (let k = j; k < second.length && second[k].start < r.end; k++) expect([r, second[k]]).toBe('never overlapping');
    }
  });
});
