import 'reflect-metadata';
import { type INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdLockModule,
  type EtcdLockOptions,
  EtcdSessionService,
  LeaderElectionService,
  LockLostError,
  LockService,
} from '../../lib/index.js';
import { whenAborted } from '../../lib/util/wait-signal.js';
import { EtcdCluster } from '../harness/cluster.js';
import { expectLeaderReplicaFailover } from '../harness/cron-replicas.js';
import { killAll } from '../harness/processes.js';

let cluster: EtcdCluster;
let client: Etcd3;
const apps: INestApplicationContext[] = [];

async function app(options: EtcdLockOptions = {}): Promise<INestApplicationContext> {
  @Module({ imports: [EtcdLockModule.forRoot({ hosts: cluster.endpoints, ttl: 3, requestTimeout: 1000, ...options })] })
  class ClusterAppModule {}
  const created = await NestFactory.createApplicationContext(ClusterAppModule, { logger: false, abortOnError: false });
  apps.push(created);
  return created;
}

const leads = (a: INestApplicationContext) => firstValueFrom(a.get(LeaderElectionService).changes().pipe(filter(Boolean)));

/**
 * Resolves after `count` acknowledged keepalives of the app's current session; rejects, saying why, if that session
 * ends first (a wait for renewals that can never come would hang the test until its timeout).
 */
function renewals(a: INestApplicationContext, count: number): Promise<void> {
  const session = a.get(EtcdSessionService).peek();
  return new Promise((resolve, reject) => {
    if (!session) return reject(new Error('no session to renew'));
    let seen = 0;
    const listeners = { off: () => {}, stop: () => {} };
    listeners.stop = session.onEnd((reason) => {
      listeners.off();
      reject(new Error(`the session ended (${reason}) before ${count} renewal(s), after ${seen}`));
    });
    listeners.off = session.onRenew(() => {
      if (++seen < count) return;
      listeners.off();
      listeners.stop();
      resolve();
    });
  });
}

/** The session's keepalive acknowledgements (ms since the call) and its end, as they happen. */
function sessionTimeline(a: INestApplicationContext): () => string[] {
  const started = performance.now();
  const at = () => `${(performance.now() - started).toFixed(0)} ms`;
  const lines: string[] = [];
  const session = a.get(EtcdSessionService).peek();
  session?.onRenew(() => lines.push(`renewed at ${at()}`));
  session?.onEnd((reason) => lines.push(`ended (${reason}) at ${at()}, ${session.remainingMs} ms left`));
  return () => lines;
}

beforeAll(async () => {
  cluster = await EtcdCluster.start();
  client = new Etcd3({ hosts: cluster.endpoints });
});

afterEach(async () => {
  await killAll();
  await Promise.all(apps.splice(0).map((a) => a.close().catch(() => undefined)));
  for (const member of cluster.members) {
    member.resume();
    if (!member.running) await cluster.restart(member);
  }
  // Every test leaves the cluster clean.
  expect(await client.getAll().keys()).toEqual([]);
  expect((await client.leaseClient.leaseLeases({})).leases).toEqual([]);
});

afterAll(async () => {
  client?.close();
  await cluster?.destroy();
});

describe('fault scenarios on a 3-member etcd cluster', () => {
  it('4. killing a follower, then the raft leader: held locks and leadership survive, keepalives go on, new acquisitions work', async () => {
    // A raft leader change stops renewals for an election (here 0.5–1.3 s from the kill to the first acknowledged
    // keepalive, measured; one more round of 0.5–1 s when the two survivors split their votes) plus, when the
    // keepalive stream was on the killed member, a reconnect. A session can go without an acknowledged keepalive
    // for 2/3 TTL minus the safety margin at worst (keepalives every TTL/3): with TTL 3 that is 1.7 s, and the
    // scenario failed 1 in 11 runs, a correct local expiry, not a fault. The README's rule (TTL ≥ 5 with a 500 ms
    // election timeout; the default 10 with etcd's 1 s) gives 2.8 s here.
    const holder = await app({ identity: 'holder', ttl: 5 });
    await leads(holder);
    const lock = await holder.get(LockService).acquire('kept');
    const other = await app({ identity: 'other', ttl: 5 });
    // What the holder's session went through, printed if the scenario fails.
    const timeline = sessionTimeline(holder);
    const check = (step: string) => {
      const state = { held: lock.isHeld, leader: holder.get(LeaderElectionService).isLeader() };
      if (!state.held || !state.leader) console.log(`scenario 4, ${step}: ${JSON.stringify(state)}; session: ${timeline().join(', ')}`);
      expect(state).toEqual({ held: true, leader: true });
    };

    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0];
    await follower.stop('SIGKILL');
    await renewals(holder, 2);
    check('after killing a follower');
    await (await other.get(LockService).acquire('new-after-follower', { timeout: 5000 })).release();
    await cluster.restart(follower);

    await leader.stop('SIGKILL');
    await renewals(holder, 2);
    check('after killing the raft leader');
    expect(lock.signal.aborted).toBe(false);
    await (await other.get(LockService).acquire('new-after-leader', { timeout: 5000 })).release();
    await lock.release();
  });

  it('5. quorum lost for less than the TTL loses nothing; for longer, holders see LockLostError at their local deadline', async () => {
    // TTL 6 by the README's rule: a session goes 2/3 TTL minus the margin (3.4 s) without a renewal, more than the
    // 1 s freeze plus the election that follows it (with TTL 4, 2.3 s: timed out once in 10 full runs here).
    const holder = await app({ identity: 'holder', ttl: 6 });
    const timeline = sessionTimeline(holder);
    const lock = await holder.get(LockService).acquire('quorum');
    const [a, b] = cluster.members;
    // Short: two of three members frozen for 1 s (TTL 6 s).
    a.pause();
    b.pause();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    a.resume();
    b.resume();
    await renewals(holder, 1).catch((err: Error) => {
      throw new Error(`${err.message}; session: ${timeline().join(', ')}`);
    });
    expect(lock.isHeld).toBe(true);
    expect(lock.signal.aborted).toBe(false);

    // Long: frozen past the TTL. The holder gives up on its own deadline (no quorum: etcd cannot expire anything).
    let lastRenewal = performance.now();
    holder
      .get(EtcdSessionService)
      .peek()
      ?.onRenew(() => (lastRenewal = performance.now()));
    const lost = whenAborted(lock.signal).then(() => performance.now());
    a.pause();
    b.pause();
    const lostAt = await lost;
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    // Lost before a full TTL had passed since the last acknowledged keepalive.
    expect(lostAt - lastRenewal).toBeLessThan(6000);
    // The holder's code stops and lets go of the lost lock (withLock would): in this process the name is free.
    await lock.release();
    a.resume();
    b.resume();
    // After quorum returns, a new session serves new locks. Right after recovery a request can still meet a
    // reconnecting channel; acquire retries its join within its own timeout, so the caller need not.
    await new Promise((resolve) => holder.get(EtcdSessionService).onSession(resolve));
    await (await holder.get(LockService).acquire('quorum', { timeout: 5000 })).release();
  });

  it('10. leader replica SIGKILLed (3 processes, all endpoints): a survivor leads, no second has two runners (failover time reported)', async () => {
    // TTL 5, the README's rule with a 500 ms election timeout: with TTL 2 a raft leader change under load (one
    // was seen in CI) can outlast a survivor's session, which then queues again and leads late.
    await expectLeaderReplicaFailover(cluster.endpoints, 5);
  });

  it('9. the whole cluster restarted with data kept: sessions recover, locks held survive', async () => {
    // The TTL must outlast the outage. SIGTERM to every member at once took ~6 s to exit here, which left as
    // little as 1.4 s of a 10 s TTL (and failed once in CI); a crash-stop keeps the data (etcd fsyncs its WAL
    // before answering) and makes the outage the restart alone, 0.3–1.6 s measured.
    const holder = await app({ identity: 'holder', ttl: 20 });
    const lock = await holder.get(LockService).acquire('restart');
    await Promise.all(cluster.members.map((m) => m.stop('SIGKILL')));
    await Promise.all(cluster.members.map((m) => cluster.restart(m)));
    // etcd keeps leases across a restart (and extends them on the new raft leader): the keepalive resumes.
    await renewals(holder, 1);
    expect(lock.isHeld).toBe(true);
    await lock.release();
  });

  it('9. the whole cluster wiped: held locks are lost, the library recovers, and fencing tokens start over', async () => {
    const holder = await app({ identity: 'holder', ttl: 3 });
    const locks = holder.get(LockService);
    // Push the revision up so that the fresh cluster's tokens are visibly lower.
    for (let i = 0; i < 30; i++) await (await locks.acquire('wiped')).release();
    const lock = await locks.acquire('wiped');
    const renewed = new Promise((resolve) => holder.get(EtcdSessionService).onSession(resolve));
    await cluster.wipe();
    // The keepalive finds the lease gone (or the deadline passes): the lock is lost, a new session is granted.
    // The keepalive can learn of the wipe while wipe() is still running: the signal may have aborted already.
    await whenAborted(lock.signal);
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    await lock.release();
    await renewed;
    const after = await locks.acquire('wiped', { timeout: 10000 });
    // What the README warns about: a wiped cluster restarts revisions, so tokens are not comparable across it.
    expect(after.fencingToken).toBeLessThan(lock.fencingToken);
    await after.release();
  });
});
