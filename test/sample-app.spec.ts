import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';
import { ROOT } from './harness/processes.js';
import { SampleReplica } from './harness/sample-replica.js';

const etcd = useEtcd();

const replicaOf = (identity: string, port: number) => new SampleReplica(etcd.endpoint, identity, port);

/**
 * The sample app reads its watch into a cache that an HTTP call reads: ask until it shows `expected`, bounded
 * (the watch event is on its way; HTTP has no way to wait for it).
 */
async function eventuallyEquals<T>(read: () => Promise<T>, expected: T): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (JSON.stringify(await read()) === JSON.stringify(expected)) return true;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return false;
}

/** The feed's cursor once `identity` has written it (the leader-held feed recipe), watched, not polled. */
async function cursorBy(identity: string): Promise<{ identity: string; term: bigint; position: number }> {
  const watcher = await etcd.client.watch().key('sample/feed/cursor').create();
  try {
    for (;;) {
      const value = await etcd.client.get('sample/feed/cursor').string();
      if (value?.startsWith(`${identity}:`)) {
        const [, term, position] = value.split(':');
        return { identity, term: BigInt(term), position: Number(position) };
      }
      await once(watcher, 'put');
    }
  } finally {
    await watcher.cancel();
  }
}

describe('sample-app as three processes', () => {
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'sample-app', 'dist', 'main.js'))) throw new Error('run `npm run build:sample` first');
  });

  it('serves its endpoints, has exactly one leader, fails over, and never loses or creates money', async () => {
    const accounts = ['a', 'b', 'c'];
    for (const id of accounts) await etcd.client.put(`sample/accounts/${id}`).value('1000');
    const replicas = await Promise.all(['r1', 'r2', 'r3'].map(async (id) => replicaOf(id, await freePort())));
    const firstLeader = Promise.race(replicas.map((r) => r.leads()));
    await Promise.all(replicas.map((r) => r.ready()));
    const leader = await firstLeader;
    const leaderCursor = await cursorBy(leader.identity); // the leader follows the feed, fenced by its term

    const views = await Promise.all(replicas.map((r) => r.get<{ leader: string; isLeader: boolean }>('/leader')));
    expect(views.map((v) => v.leader)).toEqual([leader.identity, leader.identity, leader.identity]);
    expect(views.filter((v) => v.isLeader)).toHaveLength(1);
    const health = await replicas[0].get<{ status: string; session: { alive: boolean } }>('/health');
    expect(health).toMatchObject({ status: 'ok', session: { alive: true } });
    expect(await replicas[0].get('/locks/nobody')).toEqual({ name: 'nobody', holder: null });
    // The price list: rebuilt under the write lock at one replica, read under read locks at another.
    const rebuilt = await fetch(replicas[0].url('/prices'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apple: 3, pear: 5 }),
    });
    expect(await rebuilt.json()).toEqual({ rebuilt: 2 });
    expect(await replicas[1].get('/prices')).toEqual({ 'sample/prices/apple': '3', 'sample/prices/pear': '5' });
    // Prometheus metrics through OpenTelemetry: the leader says it leads, and its session's time left.
    const metrics = await (await fetch(leader.url('/metrics'))).text();
    expect(metrics).toMatch(/^etcd_lock_leadership_leader\{etcd_lock_election="leader"[^}]*\} 1$/m);
    expect(metrics).toMatch(/^etcd_lock_leadership_terms_total\{etcd_lock_election="leader"[^}]*\} 1$/m);
    expect(metrics).toMatch(/^etcd_lock_session_remaining\{[^}]*\} \d/m);
    expect(metrics).toMatch(/^etcd_lock_etcd_request_duration_count\{[^}]*etcd_lock_request="txn"[^}]*\} \d+$/m);

    // Concurrent withdrawals at every replica: accepted ones add up exactly to what left the accounts.
    const results = await Promise.all(
      Array.from({ length: 90 }, async (_, i) => {
        const res = await fetch(replicas[i % 3].url(`/accounts/${accounts[i % 3]}/withdraw`), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ amount: 40 + (i % 7) }),
        });
        expect(res.status).toBe(201);
        return { amount: 40 + (i % 7), ...((await res.json()) as { accepted: boolean; balance: number }) };
      }),
    );
    const withdrawn = results.filter((r) => r.accepted).reduce((sum, r) => sum + r.amount, 0);
    expect(results.some((r) => !r.accepted)).toBe(true); // some were refused: the accounts ran dry
    const balances = await replicas[1].get<Record<string, number>>('/accounts');
    expect(Object.values(balances).every((b) => b >= 0)).toBe(true);
    expect(Object.values(balances).reduce((a, b) => a + b, 0)).toBe(3000 - withdrawn);

    // Name server and health monitoring: every replica sees who serves 'reports' and in what state.
    const served = await replicas[2].get<{ value: string }>('/services/reports');
    const server = replicas.find((r) => served.value === `http://127.0.0.1:${r.port} ok`) as SampleReplica;
    expect(server).toBeDefined();
    const post = (r: SampleReplica, state: string) =>
      fetch(r.url('/services/reports/state'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ state }),
      }).then((res) => res.json());
    expect(await post(server, 'degraded')).toEqual({ serving: true });
    const watcher = replicas.find((r) => r !== server) as SampleReplica;
    expect(
      await eventuallyEquals(() => watcher.get<{ name: string; value: string }>('/services/reports'), {
        name: 'reports',
        value: `http://127.0.0.1:${server.port} degraded`,
      }),
    ).toBe(true);

    // Graceful stop of the leader: another leads (by the resign: the lease would take 60 s to expire).
    const others = replicas.filter((r) => r !== leader);
    const next = Promise.race(others.map((r) => r.leads(r.process.lines.length)));
    leader.process.kill('SIGTERM');
    const successor = await next;
    // A clean exit: Nest re-raises SIGTERM after its shutdown hooks ran.
    expect(await leader.process.exited).toBe('SIGTERM');
    expect((await successor.get<{ isLeader: boolean }>('/leader')).isLeader).toBe(true);
    // The feed moved with leadership, to a later term.
    expect((await cursorBy(successor.identity)).term).toBeGreaterThan(leaderCursor.term);

    for (const r of others) r.process.kill('SIGTERM');
    expect(await Promise.all(others.map((r) => r.process.exited))).toEqual(['SIGTERM', 'SIGTERM']);
    await etcd.client.delete().prefix('sample/');
  });
});
