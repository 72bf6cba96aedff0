import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdLockEventName,
  EtcdLockEvents,
  EtcdSessionService,
  EtcdUnavailableError,
  LeaderElectionService,
  type Leadership,
} from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { ETCDCTL_BIN } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

const electionOf = (app: INestApplicationContext) => app.get(LeaderElectionService);

/** Resolves once `app` leads `name` (its own leadership stream, not polling). */
function leads(app: INestApplicationContext, name?: string): Promise<boolean> {
  return firstValueFrom(electionOf(app).changes(name).pipe(filter(Boolean)));
}

/** Resolves with the app that leads, once one does. */
function someoneLeads(apps: INestApplicationContext[], name?: string): Promise<INestApplicationContext> {
  return Promise.race(apps.map((app) => leads(app, name).then(() => app)));
}

async function threeApps(options = {}) {
  return Promise.all(['a', 'b', 'c'].map((identity) => etcd.app({ identity, ...options })));
}

describe('LeaderElectionService', () => {
  it('elects exactly one leader among three instances; leader() and observe() name it', async () => {
    const apps = await threeApps();
    const leader = await someoneLeads(apps);
    const identity = leader.get(EtcdSessionService).status().identity;
    expect(apps.filter((app) => electionOf(app).isLeader())).toEqual([leader]);
    expect(await electionOf(apps[0]).leader()).toBe(identity);
    expect(await firstValueFrom(electionOf(apps[1]).observe())).toBe(identity);
    expect(await etcd.client.getAll().prefix('election/leader/').keys()).toHaveLength(3);
  });

  it('hands leadership to a standby when the leader app closes, by resigning (not by its lease expiring)', async () => {
    // A TTL longer than the test's timeout (30 s): a standby that waited for the lease to expire would fail it.
    // How fast the handover is, is measured in the bench.
    const apps = await threeApps({ ttl: 60 });
    const leader = await someoneLeads(apps);
    const others = apps.filter((app) => app !== leader);
    const next = someoneLeads(others);
    await leader.close();
    await next;
    expect(others.filter((app) => electionOf(app).isLeader())).toHaveLength(1);
  });

  it('runs named elections independently, created on first use', async () => {
    const [a, b] = await Promise.all([etcd.app({ identity: 'a' }), etcd.app({ identity: 'b' })]);
    await someoneLeads([a, b], 'billing');
    const billingLeader = electionOf(a).isLeader('billing') ? a : b;
    const other = billingLeader === a ? b : a;
    // The other instance can lead a different election: spread the work.
    await electionOf(billingLeader).resign('reports');
    await electionOf(other).campaign('reports');
    expect(electionOf(other).isLeader('reports')).toBe(true);
    expect(electionOf(billingLeader).isLeader('billing')).toBe(true);
    expect(await electionOf(a).leader('billing')).toBe(billingLeader === a ? 'a' : 'b');
  });

  it('resign() hands over at once and campaign() rejoins', async () => {
    const [a, b] = await Promise.all([etcd.app({ identity: 'a' }), etcd.app({ identity: 'b' })]);
    const first = await someoneLeads([a, b]);
    const second = first === a ? b : a;
    const handedOver = leads(second);
    await electionOf(first).resign();
    await handedOver;
    expect(electionOf(first).isLeader()).toBe(false);
    expect(await etcd.client.getAll().prefix('election/leader/').keys()).toHaveLength(1);
    const rejoined = electionOf(first).campaign();
    await electionOf(second).resign();
    await rejoined;
    expect(electionOf(first).isLeader()).toBe(true);
  });

  it('ends leadership locally when the session deadline passes while etcd answers nothing', async () => {
    const app = await etcd.app({ ttl: 2, requestTimeout: 500 });
    await leads(app);
    const ended = firstValueFrom(
      electionOf(app)
        .changes()
        .pipe(filter((leader) => !leader)),
    );
    const lost = firstValueFrom(app.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.SessionLost)));
    etcd.server.pause();
    try {
      await ended;
      // Ended by our own clock while etcd is frozen (nothing from etcd could end it): the local deadline.
      expect(await lost).toMatchObject({ reason: 'deadline-passed' });
      expect(electionOf(app).isLeader()).toBe(false);
    } finally {
      etcd.server.resume();
    }
    // It campaigns again on a new session once etcd answers.
    await leads(app);
  });

  it('follows a leader proclaimed by `etcdctl elect`, and `etcdctl elect -l` shows ours', async () => {
    const app = await etcd.app({ identity: 'nest-a' });
    await leads(app);
    const observed = await etcdctlObserve();
    expect(observed).toEqual(['election/leader/', 'nest-a']);
    await electionOf(app).resign();

    const etcdctl = spawnEtcdctl(['elect', 'election/leader', 'etcdctl-proposal']);
    await firstLine(etcdctl);
    await electionOf(app)
      .campaign('leader', { signal: AbortSignal.timeout(300) })
      .catch(() => undefined);
    expect(electionOf(app).isLeader()).toBe(false);
    expect(await electionOf(app).leader()).toBe('etcdctl-proposal');
    const nestLeads = leads(app);
    const exited = once(etcdctl, 'exit');
    etcdctl.kill('SIGINT');
    await exited;
    await nestLeads;
    await revokeLeasesExcept(app);
  });
});

describe('LeaderElectionService: no call order crashes, doubles a campaign or hangs', () => {
  it('resign() not awaited, then campaign(): one campaign loop, one key, and both settle', async () => {
    const app = await etcd.app({ identity: 'a' });
    await leads(app);
    const joins: string[] = [];
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    port.txn = (req, what, timeoutMs) => {
      if (what.startsWith('join the queue of')) joins.push(what);
      return txn(req, what, timeoutMs);
    };
    const resigned = electionOf(app).resign();
    await Promise.all([resigned, electionOf(app).campaign()]);
    expect(electionOf(app).isLeader()).toBe(true);
    expect(joins).toHaveLength(1);
    expect(await etcd.client.getAll().prefix('election/leader/').keys()).toHaveLength(1);
  });

  it('after resign(), reading leadership (changes(), term(), isLeader()) does not campaign again', async () => {
    const app = await etcd.app({ identity: 'a' });
    await leads(app);
    await electionOf(app).resign();
    const subscription = electionOf(app).changes().subscribe();
    expect(electionOf(app).term()).toBeUndefined();
    expect(electionOf(app).isLeader()).toBe(false);
    expect(electionOf(app).status()).toEqual([{ election: 'leader', leader: false, campaigning: false, fencingToken: undefined }]);
    subscription.unsubscribe();
    expect(await etcd.client.getAll().prefix('election/leader/').keys()).toEqual([]);
  });

  it('campaign() just as the leader key is deleted from outside settles once this instance leads again', async () => {
    const app = await etcd.app({ identity: 'a' });
    await leads(app);
    const first = electionOf(app).term() as Leadership;
    const [key] = await etcd.client.getAll().prefix('election/leader/').keys();
    const deleted = etcd.client.delete().key(key).exec();
    const campaigned = electionOf(app).campaign();
    expect(await whenAborted(first.signal)).toMatchObject({ reason: 'key-deleted' });
    await Promise.all([deleted, campaigned]);
    const next = () => (electionOf(app).term()?.fencingToken ?? 0n) > first.fencingToken;
    await firstValueFrom(electionOf(app).changes().pipe(filter(next)));
    await electionOf(app).campaign();
    expect(await electionOf(app).leader()).toBe('a');
  });

  it('campaign() during or after shutdown rejects with EtcdUnavailableError instead of never settling', async () => {
    const a = await etcd.app({ identity: 'a' });
    const b = await etcd.app({ identity: 'b' });
    await leads(a);
    const pending = electionOf(b)
      .campaign()
      .catch((err: unknown) => err);
    await b.close();
    expect(await pending).toBeInstanceOf(EtcdUnavailableError);
    await expect(electionOf(b).campaign()).rejects.toThrow('the application is shutting down');
  });
});

function spawnEtcdctl(args: string[]): ChildProcess {
  return spawn(ETCDCTL_BIN, ['--endpoints', etcd.endpoint, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', () => reject(new Error('etcdctl exited before printing')));
  });
}

/** `etcdctl elect -l`: prints the leader's key and value, then keeps observing; we read one pair. */
async function etcdctlObserve(): Promise<[string, string]> {
  const child = spawnEtcdctl(['elect', '-l', 'election/leader']);
  const lines = await new Promise<string[]>((resolve) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const parts = out.split('\n');
      if (parts.length >= 3) resolve(parts);
    });
  });
  const exited = once(child, 'exit');
  child.kill('SIGINT');
  await exited;
  return [lines[0].replace(/[0-9a-f]+$/, ''), lines[1]];
}

/** etcdctl leaves its session lease to expire; revoke every lease that is not the app's own. */
async function revokeLeasesExcept(app: INestApplicationContext): Promise<void> {
  const ours = (await etcd.client.getAll().prefix('election/').keys()).map((k) => k.split('/').pop());
  const { leases } = await etcd.client.leaseClient.leaseLeases({});
  for (const lease of leases) {
    if (!ours.includes(BigInt(lease.ID).toString(16))) await etcd.client.leaseClient.leaseRevoke({ ID: lease.ID });
  }
  void app;
}
