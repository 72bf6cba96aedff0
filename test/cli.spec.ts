import type { ChildProcess } from 'node:child_process';
import type { INestApplicationContext } from '@nestjs/common';
import { createInterface } from 'node:readline';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdSessionService,
  LeaderElectionService,
  LeadershipLostError,
  type Lock,
  LockLostError,
  LockService,
  ReadWriteLockService,
  SemaphoreService,
  ShardingService,
} from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { runCli, spawnCli } from './harness/cli.js';
import { freePort } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();
const PREFIX = 'app/';

interface StatusJson {
  revision: string;
  locks: Array<{ name: string; fencingToken: string; holder: { value: string; lease: string }; waiters: Array<{ value: string }> }>;
  elections: Array<{ name: string; fencingToken: string; holder: { value: string }; waiters: Array<{ value: string }> }>;
  shardGroups: Array<{
    group: string;
    shards: number;
    members: Array<{ identity: string }>;
    assigned: Record<string, number[]>;
    held: Record<string, { value: string; fencingToken: string }>;
  }>;
  sessions: Array<{ lease: string; ttl: number; grantedTtl: number; identities: string[]; holds: string[] }>;
}

const cli = (args: string[], input = '') => runCli(['--endpoints', etcd.endpoint, '--prefix', PREFIX, ...args], input);
const replica = (identity: string) => etcd.app({ identity, prefix: PREFIX, ttl: 5 });
const leaseOf = (app: INestApplicationContext) => app.get(EtcdSessionService).status().leaseId;
const reports = (s: StatusJson) => s.elections.find((e) => e.name === 'reports');
const watching = new Set<ChildProcess>();
// A test that fails while watching must not leave the CLI running.
afterEach(() => {
  for (const child of watching) child.kill('SIGKILL');
  watching.clear();
});

/** `status --json --watch` until a document satisfies `ok`; then it is interrupted (and must exit 0). */
const watchUntilRaw = (ok: (status: Record<string, Array<{ waiters: unknown[] }>>) => boolean) => watchUntil(ok as never);

async function watchUntil(ok: (status: StatusJson) => boolean): Promise<StatusJson> {
  const child = spawnCli(['--endpoints', etcd.endpoint, '--prefix', PREFIX, 'status', '--json', '--watch']);
  watching.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    for await (const line of createInterface({ input: child.stdout as NodeJS.ReadableStream })) {
      const status = JSON.parse(line) as StatusJson;
      if (ok(status)) return status;
    }
    throw new Error('status --watch ended before the expected state');
  } finally {
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    watching.delete(child);
  }
}

describe('The admin CLI (nestjs-etcd-lock) against apps holding locks, elections and shards', () => {
  it('status shows holders, tokens, waiters in order, leaders, shards and sessions; release and resign hand over', async () => {
    const [a, b, c] = [await replica('replica-a'), await replica('replica-b'), await replica('replica-c')];
    const lockA = await a.get(LockService).acquire('orders:42');
    const bGets = b.get(LockService).acquire('orders:42');
    // B queues first, then C: their order is the order of their keys' create revisions.
    await watchUntil((s) => s.locks[0]?.waiters.length === 1);
    const cGets = c.get(LockService).acquire('orders:42');
    await a.get(LeaderElectionService).campaign('reports');
    b.get(LeaderElectionService).term('reports');
    await Promise.all([a, b].map((app) => app.get(ShardingService).join('tenants', { shards: 4 })));

    // Watch mode, from etcd's watches: the document once everything above is in place.
    const status = await watchUntil(
      (s) =>
        s.locks[0]?.waiters.length === 2 &&
        reports(s)?.waiters.length === 1 &&
        Object.keys(s.shardGroups[0]?.held ?? {}).length === 4 &&
        Object.values(s.shardGroups[0]?.assigned ?? {}).every((shards) => shards.length === 2),
    );
    const one = JSON.parse((await cli(['status', '--json'])).stdout) as StatusJson;
    expect(one.locks).toEqual(status.locks);

    expect(status.locks).toEqual([
      expect.objectContaining({
        name: 'orders:42',
        fencingToken: lockA.fencingToken.toString(),
        holder: expect.objectContaining({ value: 'replica-a', lease: leaseOf(a) }),
        waiters: [expect.objectContaining({ value: 'replica-b' }), expect.objectContaining({ value: 'replica-c' })],
      }),
    ]);
    const term = a.get(LeaderElectionService).term('reports');
    expect(reports(status)).toMatchObject({
      fencingToken: term?.fencingToken.toString(),
      holder: { value: 'replica-a' },
      waiters: [{ value: 'replica-b' }],
    });
    const [group] = status.shardGroups;
    expect(group).toMatchObject({ group: 'tenants', shards: 4 });
    expect(group.members.map((m) => m.identity).sort()).toEqual(['replica-a', 'replica-b']);
    expect(group.assigned).toEqual(Object.fromEntries(await a.get(ShardingService).assignment('tenants')));
    for (const [index, holder] of Object.entries(group.held)) expect(group.assigned[holder.value]).toContain(Number(index));
    const sessionA = status.sessions.find((s) => s.lease === leaseOf(a));
    expect(sessionA).toMatchObject({ grantedTtl: 5, identities: ['replica-a'] });
    expect(sessionA?.ttl).toBeGreaterThan(0);
    expect(sessionA?.holds).toEqual(expect.arrayContaining(['holds lock orders:42', 'leads reports', 'member of tenants']));
    expect(status.sessions.find((s) => s.lease === leaseOf(c))?.holds).toEqual(expect.arrayContaining(['waits for lock orders:42 (#2)']));

    // The table: one row per lock with its holder, token, lease and waiters.
    const text = (await cli(['status'])).stdout;
    expect(text).toContain(`prefix '${PREFIX}'`);
    expect(text).toMatch(new RegExp(`orders:42\\s+replica-a\\s+${lockA.fencingToken}\\s+${leaseOf(a)}\\s+\\d+s\\s+replica-b, replica-c`));
    expect(text).toMatch(new RegExp(`reports\\s+replica-a\\s+${term?.fencingToken}\\s+${leaseOf(a)}\\s+\\d+s\\s+replica-b`));
    expect(text).toMatch(/tenants\s+4\s+replica-a\s+[\d,-]+\s+[\d,-]+/);

    // No confirmation (stdin ends): nothing is deleted.
    const declined = await cli(['release', 'orders:42']);
    expect(declined).toMatchObject({ code: 6 });
    expect(declined.stderr).toContain("not confirmed: lock 'orders:42' left as it is");
    expect(lockA.isHeld).toBe(true);

    // Confirmed on stdin: the holder's signal aborts with key-deleted, the first waiter takes over.
    const released = await cli(['release', 'orders:42'], 'y\n');
    expect(released.code).toBe(0);
    expect(released.stdout).toContain(`released lock 'orders:42': holder 'replica-a', fencing token ${lockA.fencingToken}`);
    expect(released.stdout).toContain("next in line: 'replica-b'");
    expect(await whenAborted(lockA.signal)).toMatchObject({ name: LockLostError.name, reason: 'key-deleted' });
    const lockB: Lock = await bGets;
    expect(lockB.fencingToken).toBeGreaterThan(lockA.fencingToken);

    expect((await cli(['release', 'orders:42', '--yes'])).code).toBe(0);
    const lockC = await cGets;
    expect(lockC.fencingToken).toBeGreaterThan(lockB.fencingToken);
    await lockC.release();

    // resign: the term ends as the library reports a deleted key, and the next candidate leads.
    const bLeads = firstValueFrom(b.get(LeaderElectionService).changes('reports').pipe(filter(Boolean)));
    const resigned = await cli(['resign', 'reports', '-y']);
    expect(resigned.code).toBe(0);
    expect(resigned.stdout).toContain(`resigned election 'reports': leader 'replica-a', fencing token ${term?.fencingToken}`);
    expect(await whenAborted(term?.signal as AbortSignal)).toBeInstanceOf(LeadershipLostError);
    await bLeads;
  });

  it('exits 5 for a name nobody holds, 2 for a bad name or flag, 3 when etcd is unreachable (naming the endpoint)', async () => {
    const unknown = await cli(['release', 'nobody-holds-this', '--yes']);
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toContain("lock 'nobody-holds-this' is not held: no key under 'app/lock/nobody-holds-this/'");
    expect((await cli(['resign', 'no-election', '--yes'])).code).toBe(5);

    const bad = await cli(['release', 'a/b', '--yes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("the lock name must not contain '/'");
    expect((await cli(['status', '--no-such-flag'])).code).toBe(2);
    expect((await cli(['status', '--command-timeout', 'soon'])).code).toBe(2);

    const endpoint = `127.0.0.1:${await freePort()}`;
    const down = await runCli(['--endpoints', endpoint, 'status']);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain(`cannot reach etcd at ${endpoint}`);
  });

  it('prints names and values escaped: a control sequence or a right-to-left override in them rewrites nothing', async () => {
    const hostile = 'x\u001b[2J\r\u202eok';
    // Written by someone else (our library refuses such names): a lock key with a hostile name and value.
    await etcd.client.put(`${PREFIX}lock/ev\u001b]0;il/abc`).value(hostile).exec();
    const table = await cli(['status']);
    const json = await cli(['status', '--json']);
    for (const out of [table.stdout, json.stdout]) {
      for (const raw of ['\u001b', '\r', '\u202e']) expect(out).not.toContain(raw);
    }
    expect(table.stdout).toContain('x\\u{001B}[2J\\u{000D}\\u{202E}ok');
    expect(JSON.parse(json.stdout).locks[0].holder.value).toBe(hostile);
    const release = await cli(['release', 'ev\u001b]0;il', '--yes']);
    expect(release.code).toBe(2);
    expect(release.stderr).toContain('must not contain control or bidirectional-override characters (found U+001B)');
    expect(release.stderr).not.toContain('\u001b');
    await etcd.client.delete().prefix(PREFIX).exec();
  });

  it('status shows semaphores (limit, holders, waiters) and read/write locks (readers, the waiting writer)', async () => {
    const app = await replica('replica-s');
    const semaphores = app.get(SemaphoreService);
    const rw = app.get(ReadWriteLockService);
    const permits = [await semaphores.acquire('partner-api', { limit: 2 }), await semaphores.acquire('partner-api', { limit: 2 })];
    const waiting = semaphores.acquire('partner-api', { limit: 2, value: 'third' });
    const reader = await rw.acquireRead('prices', { value: 'reader' });
    const writer = rw.acquireWrite('prices', { value: 'writer' });
    const status = (await watchUntilRaw(
      (s) => s.semaphores?.[0]?.waiters.length === 1 && s.rwlocks?.[0]?.waiters.length === 1,
    )) as unknown as {
      semaphores: Array<{ name: string; limit: number; holders: Array<{ createRevision: string }>; waiters: Array<{ value: string }> }>;
      rwlocks: Array<{ name: string; holders: Array<{ mode: string; value: string }>; waiters: Array<{ mode: string; value: string }> }>;
    };
    expect(status.semaphores).toEqual([
      expect.objectContaining({ name: 'partner-api', limit: 2, waiters: [expect.objectContaining({ value: 'third' })] }),
    ]);
    expect(status.semaphores[0].holders.map((h) => h.createRevision)).toEqual(permits.map((p) => p.fencingToken.toString()));
    expect(status.rwlocks).toEqual([
      {
        name: 'prices',
        holders: [expect.objectContaining({ mode: 'read', value: 'reader' })],
        waiters: [expect.objectContaining({ mode: 'write', value: 'writer' })],
      },
    ]);
    const text = (await cli(['status'])).stdout;
    expect(text).toMatch(/partner-api\s+2\s+replica-s \(\d+\), replica-s \(\d+\)\s+third \(\d+\)/);
    expect(text).toMatch(/prices\s+read reader \(\d+\)\s+write writer \(\d+\)/);
    await permits[0].release();
    await Promise.all([permits[1].release(), (await waiting).release(), reader.release()]);
    await (await writer).release();
  });

  it('status on an empty prefix says so in each section', async () => {
    const empty = await cli(['status']);
    expect(empty.code).toBe(0);
    for (const line of [
      'no lock is held',
      'no election has a candidate',
      'no semaphore permit is held',
      'no read/write lock is held',
      'no sharding group',
      'no session holds a key',
    ]) {
      expect(empty.stdout).toContain(line);
    }
  });

  it('transfer hands an election to the named candidate with nobody in between; an unknown one exits 5, leadership kept', async () => {
    const a = await replica('a');
    await a.get(LeaderElectionService).campaign('reports');
    const [b, c] = [await replica('b'), await replica('c')];
    for (const app of [b, c]) app.get(LeaderElectionService).changes('reports').subscribe();
    await etcd.waitForKeys(`${PREFIX}election/reports/`, 3);
    const bLed: boolean[] = [];
    b.get(LeaderElectionService)
      .changes('reports')
      .subscribe((leader) => leader && bLed.push(leader));

    const unknown = await cli(['transfer', 'reports', '--to', 'nobody', '--yes']);
    expect([unknown.code, unknown.stderr]).toEqual([5, expect.stringContaining("'nobody' is not a candidate")]);
    expect(a.get(LeaderElectionService).isLeader('reports')).toBe(true);

    const cLeads = firstValueFrom(c.get(LeaderElectionService).changes('reports').pipe(filter(Boolean)));
    const done = await cli(['transfer', 'reports', '--to', 'c', '--yes']);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain("to 'c'");
    await cLeads;
    expect(bLed).toEqual([]);
    expect(await a.get(LeaderElectionService).leader('reports')).toBe('c');
  });
});
