import { filter, firstValueFrom } from 'rxjs';
import { LeaderElectionService, LockService } from '../lib/index.js';
import { DeletionWatches } from '../lib/module/deletion-watches.js';
import { grpcCounts } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

/** One of etcd's own plain counters or gauges (Prometheus, `/metrics`). */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`etcd has no metric ${name}`);
  return Number(line.split(' ')[1]);
}

describe('deletion watches scoped to interest', () => {
  it("an instance is sent no event for other instances' locks: each release reaches its own holder only", async () => {
    // Two idle instances (a session and their election watch) and one busy one, on 30 different names.
    const idle = [await etcd.app({ identity: 'idle-1' }), await etcd.app({ identity: 'idle-2' })];
    const busy = await etcd.app({ identity: 'busy' });
    const locks = busy.get(LockService);
    const before = await metric('etcd_debugging_mvcc_events_total');
    for (let i = 0; i < 30; i++) await (await locks.acquire(`order:${i}`)).release();
    // Each cycle's deletion went to the busy instance's watch of that name (its own release), to no one else.
    const sent = (await metric('etcd_debugging_mvcc_events_total')) - before;
    expect(sent).toBeLessThanOrEqual(30);
    for (const app of idle) expect(app.get(DeletionWatches).of('lock').size).toBe(0);
  });

  it("a hot name's watch stays open between cycles, then goes: no watch message per cycle", async () => {
    const app = await etcd.app();
    // The default election settles first (campaigning starts at bootstrap, and its key's watch after the join).
    await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));
    await app.get(DeletionWatches).of('election').watching('leader');
    const locks = app.get(LockService);
    const deletes = app.get(DeletionWatches).of('lock');
    await (await locks.acquire('hot')).release();
    await deletes.watching('hot');
    const watchMessages = async () => (await grpcCounts([etcd.endpoint])).get('Watch') ?? 0;
    const before = await watchMessages();
    for (let i = 0; i < 20; i++) await (await locks.acquire('hot')).release();
    expect(await watchMessages()).toBe(before);
    expect(deletes.size).toBe(1);
  });
});
