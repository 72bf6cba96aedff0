import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { type INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { EtcdLockModule, LeaderElectionService, LockService, SemaphoreService, ShardingService } from '../../lib/index.js';
import { EtcdCluster } from '../harness/cluster.js';
import { EtcdServer } from '../harness/etcd.js';
import { TcpProxy } from '../harness/proxy.js';
import { checkHistory, type Operation, overlaps } from '../harness/history.js';
import { NodeProcess, killAll } from '../harness/processes.js';

describe('mutual-exclusion checker (Jepsen-style), with requests in doubt', () => {
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

  it('the stall leaves a request in doubt (the nemesis is not blind): a put past its deadline is applied after its caller gave up', async () => {
    const etcd = await EtcdServer.start();
    const proxy = await TcpProxy.start(etcd.endpoint);
    // As the library's client: no blind retries, a deadline per request.
    const stalled = new Etcd3({
      hosts: proxy.endpoint,
      faultHandling: { global: noop },
      defaultCallOptions: () => ({ deadline: Date.now() + 300 }),
    });
    const direct = new Etcd3({ hosts: etcd.endpoint });
    try {
      await stalled.put('warm').value('up');
      const stall = proxy.stall(1000);
      await expect(stalled.put('in-doubt').value('late')).rejects.toThrow(/DEADLINE_EXCEEDED/);
      expect(await direct.get('in-doubt').string()).toBeNull(); // the caller gave up; a read elsewhere sees nothing
      await stall;
      const watcher = await direct.watch().key('in-doubt').create();
      const applied = new Promise<string>((resolve) => watcher.on('put', (kv) => resolve(kv.value.toString())));
      // Applied after the stall (the watch replays it if it landed before the watch began).
      expect((await direct.get('in-doubt').string()) ?? (await applied)).toBe('late');
      await watcher.cancel();
      await direct.delete().all();
    } finally {
      stalled.close();
      direct.close();
      await proxy.close();
      await etcd.destroy();
    }
  });

  it('locks: 4 client processes under the nemesis: no fenced violation, no stranded key, every name free again at once', async () => {
    const result = await underNemesis({
      worker: 'test/workers/checker-worker.mjs',
      holders: 'lock/jepsen/',
      counters: ['checker/fenced', 'checker/unfenced'],
      liveness: async (app) => {
        for (const name of ['jepsen', 'jepsen-quick']) await (await app.get(LockService).acquire(name, { timeout: LIVENESS_MS })).release();
      },
    });
    expectSafeAndLive(result, 20);
    expect(result.unanswered).toBeGreaterThan(0); // the stalls left takes in doubt, or the run proved nothing
  }, 150_000);

  it('semaphore permits (limit 1) under the same nemesis: no fenced violation, no permit stranded or lost', async () => {
    const result = await underNemesis({
      worker: 'test/workers/checker-worker.mjs',
      env: { WORKLOAD: 'semaphore' },
      holders: 'semaphore/jepsen-permits/',
      counters: ['checker/permit-fenced', 'checker/permit-unfenced'],
      liveness: async (app) => {
        const semaphores = app.get(SemaphoreService);
        await (await semaphores.acquire('jepsen-permits', { limit: 1, timeout: LIVENESS_MS })).release();
        // Both permits of the quick name are free: none stranded.
        const permits = [0, 1].map(() => semaphores.acquire('jepsen-quick-permits', { limit: 2, timeout: LIVENESS_MS }));
        for (const permit of await Promise.all(permits)) await permit.release();
      },
    });
    expectSafeAndLive(result, 20);
    expect(result.unanswered).toBeGreaterThan(0);
  }, 150_000);

  // The leader workload, plain and with preferred leaders (each worker a random leaderPriority from 0 to 3, so
  // leaders hand over by transfer as workers are killed and started again).
  it.each([
    ['leaders writing through term.fencedTxn()', {}],
    ['preferred leaders (random priorities, hand-overs as workers come and go)', { LEADER_PRIORITY: 'random' }],
  ])(
    '%s under the same nemesis: no fenced violation (the unfenced control is reported)',
    async (_what, env) => {
      const result = await underNemesis({
        worker: 'test/workers/leader-checker-worker.mjs',
        env,
        holders: 'election/jepsen-leader/',
        counters: ['checker/leader-fenced', 'checker/leader-unfenced'],
        alsoStranded: ['priority/jepsen-leader/'],
        liveness: async (app) => {
          const elections = app.get(LeaderElectionService);
          await elections.campaign('jepsen-leader', { signal: AbortSignal.timeout(LIVENESS_MS) });
          await elections.resign('jepsen-leader');
        },
      });
      expectSafeAndLive(result, 20);
      // Work acknowledged in more than one term, or the nemesis never deposed a leader. (Not "more than two": on a
      // saturated machine a term can end before it acknowledges anything, seen once in a busy run.)
      expect(new Set(result.ops.filter((o) => o.ok).map((o) => o.token)).size).toBeGreaterThan(1);
    },
    150_000,
  );

  it('sharded work written through each shard’s fencedTxn() under the same nemesis: no fenced violation on any shard', async () => {
    const result = await underNemesis({
      worker: 'test/workers/shard-checker-worker.mjs',
      holders: 'shard/jepsen-shards/0/',
      counters: ['checker/shard-fenced', 'checker/shard-unfenced'],
      shards: 4,
      // A member key left by a leave whose delete went unanswered keeps shards assigned to a member that is gone.
      alsoStranded: ['member/jepsen-shards/'],
      liveness: async (app) => {
        const sharding = app.get(ShardingService);
        await sharding.join('jepsen-shards', { shards: 4 });
        await firstValueFrom(
          sharding.owned('jepsen-shards').pipe(
            filter((owned) => owned.length === 4),
            timeout(LIVENESS_MS),
          ),
        );
        await sharding.leave('jepsen-shards');
      },
    });
    expectSafeAndLive(result, 40);
    // Shards changed hands, or the nemesis never moved one.
    expect(new Set(result.ops.filter((o) => o.ok && o.shard === 0).map((o) => o.token)).size).toBeGreaterThan(2);
  }, 150_000);
});

/** The workers' request timeout: a stall holds traffic for longer, so that a request in it gets no answer. */
const REQUEST_TIMEOUT_MS = 1000;
const STALL_MS = REQUEST_TIMEOUT_MS + 500;
/** After the nemesis, another process takes each name within this (not after a TTL, not after a session). */
const LIVENESS_MS = REQUEST_TIMEOUT_MS + 1000;
/** Each kind of fault, in turn, every 1.2 s: stalls (requests in doubt) between the others. */
const NEMESES = ['stall-member', 'pause-holder', 'stall-member', 'kill-client', 'stall-member', 'kill-member'] as const;
const ROUNDS = 12;

interface Workload {
  /** The worker script: one JSON line per operation. */
  worker: string;
  env?: NodeJS.ProcessEnv;
  /** Where the holders' keys are (the oldest key under it holds). */
  holders: string;
  /** The fenced and the unfenced counter (with `-<shard>` appended per shard when `shards` is given). */
  counters: [string, string];
  /** Sharded workload: operations carry `shard`, and each shard's history is checked on its own. */
  shards?: number;
  /** More key prefixes where nothing may be left on a live worker's lease. */
  alsoStranded?: string[];
  /** Takes every name of the workload from another process, within `LIVENESS_MS`, and lets go. */
  liveness: (app: INestApplicationContext) => Promise<void>;
}

function expectSafeAndLive(result: Awaited<ReturnType<typeof underNemesis>>, acknowledged: number): void {
  expect(result.report.fencedViolations).toEqual([]);
  expect(result.report.acknowledged).toBeGreaterThan(acknowledged);
  expect(result.stranded).toEqual([]);
  expect(result.livenessError).toBeUndefined();
  expect(result.livenessMs).toBeLessThan(LIVENESS_MS);
  expect(result.faults.filter((f) => f.startsWith('stalled')).length).toBe(ROUNDS / 2);
  expect(result.faults.length).toBeGreaterThanOrEqual(ROUNDS - 2); // a pause finds no holder when the lock changes hands
}

/**
 * Runs 4 worker processes on a 3-member cluster, each member behind a proxy of its own, under a nemesis (twelve
 * faults, one every 1.2 s: stall one member's proxy past the request timeout and then deliver what it held, pause
 * the holder past its TTL, kill a client, kill an etcd member). Then every worker lets go of everything it holds
 * and stays up: a key left on a live worker's lease after `LIVENESS_MS` is stranded. Another process must take
 * every name within `LIVENESS_MS`. Last, the history is checked.
 */
async function underNemesis({ worker, env, holders, counters, shards, alsoStranded = [], liveness }: Workload) {
  const cluster = await EtcdCluster.start();
  const proxies = await Promise.all(cluster.endpoints.map((endpoint) => TcpProxy.start(endpoint)));
  const hosts = proxies.map((proxy) => proxy.endpoint).join(',');
  const client = new Etcd3({ hosts: cluster.endpoints });
  const workers: NodeProcess[] = [];
  const faults: string[] = [];
  let next = 0;
  const spawnWorker = () => {
    const w = new NodeProcess(worker, [hosts, `c${next++}`], env);
    workers.push(w);
    return w;
  };
  const isAlive = (w: NodeProcess) => w.child.exitCode === null && w.child.signalCode === null;
  let checkApp: INestApplicationContext | undefined;
  try {
    for (let i = 0; i < 4; i++) spawnWorker();
    for (let round = 0; round < ROUNDS; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1200));
      const action = NEMESES[round % NEMESES.length];
      if (action === 'stall-member') {
        const i = Math.floor(Math.random() * proxies.length);
        faults.push(`stalled etcd m${i} for ${STALL_MS} ms`);
        await proxies[i].stall(STALL_MS);
      } else if (action === 'pause-holder') {
        const holder = await client.getAll().prefix(holders).sort('Create', 'Ascend').limit(1).strings();
        const identity = Object.values(holder)[0];
        const w = workers.find((x) => x.child.pid && isAlive(x) && identity === workerIdentity(x));
        if (!w) continue;
        w.child.kill('SIGSTOP');
        faults.push(`paused holder ${identity}`);
        await new Promise((resolve) => setTimeout(resolve, 3500)); // past its 2 s TTL
        w.child.kill('SIGCONT');
      } else if (action === 'kill-client') {
        const alive = workers.filter(isAlive);
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

    // Quiesce: every live worker lets go of all it holds and reports its lease, which stays alive.
    const alive = workers.filter(isAlive);
    for (const w of alive) w.send('quiesce');
    const quiesced = await bounded(
      Promise.all(alive.map(async (w) => JSON.parse(await w.line((l) => l.includes('"quiesced"'))) as { lease: string | null })),
      30_000,
    );
    if (!quiesced) console.log(`quiesce stuck; faults: ${faults.join(', ')}`);
    expect(quiesced).toBeDefined();
    const liveLeases = new Set((quiesced ?? []).map((q) => q.lease).filter((lease): lease is string => lease !== null));
    await new Promise((resolve) => setTimeout(resolve, LIVENESS_MS));
    const root = holders.split('/')[0]; // every name of the workload's kind
    const kvs = [];
    for (const prefix of [`${root}/`, ...alsoStranded]) kvs.push(...(await client.getAll().prefix(prefix).exec()).kvs);
    const stranded = kvs.filter((kv) => liveLeases.has(BigInt(kv.lease).toString(16))).map((kv) => kv.key.toString());

    // Liveness: another process (straight to etcd) takes every name at once.
    checkApp = await checkerApp(cluster.endpoints);
    const livenessStarted = performance.now();
    const livenessError = await liveness(checkApp).then(
      () => undefined,
      async (err: unknown) => {
        // What held the name: every key of the workload, with its lease (and the live workers' leases).
        const left = [];
        for (const prefix of [`${root}/`, ...alsoStranded, 'assignment/']) left.push(...(await client.getAll().prefix(prefix).exec()).kvs);
        const shown = left.map((kv) => `${kv.key} (lease ${BigInt(kv.lease).toString(16)}): ${kv.value.toString().slice(0, 200)}`);
        console.log(`liveness failed (${String(err)}); live leases ${[...liveLeases].join(', ')}; keys: ${shown.join(' | ')}`);
        return err;
      },
    );
    const livenessMs = livenessError === undefined ? performance.now() - livenessStarted : Number.POSITIVE_INFINITY;

    for (const w of alive) w.send('stop');
    const stopped = await bounded(Promise.all(alive.map((w) => w.exited)), 30_000);
    for (const w of stopped ? [] : alive.filter(isAlive)) {
      console.log(
        `stuck ${workerIdentity(w)}: ${w.lines.length} lines, last: ${w.lines.slice(-2).join(' | ')}; faults: ${faults.join(', ')}`,
      );
    }
    expect(stopped).toBeDefined();

    const ops = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('{"identity"')).map((l) => JSON.parse(l) as Operation & { unfenced: boolean; shard?: number }),
    );
    const killed = faults.filter((f) => f.startsWith('killed client')).length;
    // Takes that gave up with no answer from etcd (the workers that count them): each may have left a join in doubt.
    const unanswered = workers
      .flatMap((w) => w.lines.filter((l) => l.startsWith('{"unanswered"')))
      .reduce((n, l) => n + (JSON.parse(l) as { unanswered: number }).unanswered, 0);
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
      `checker (${worker}${env?.WORKLOAD ? ` ${env.WORKLOAD}` : ''}): ${report.operations} operations, ${report.acknowledged} acknowledged; ` +
        `faults: ${faults.join(', ')}; ${unknown} indeterminate; ${unanswered} takes gave up unanswered; fenced violations: ${report.fencedViolations.length} ` +
        `${report.fencedViolations.slice(0, 3).join('; ')}; stranded keys: ${stranded.length} (of ${kvs.length} under ${root}/ ` +
        `after quiesce); liveness: ${livenessError === undefined ? `every name taken by another process in ${livenessMs.toFixed(0)} ms` : 'FAILED'}; ` +
        `unfenced control: ${overlapping} overlapping operations of different holders, ${report.unfencedLost} lost updates`,
    );
    if (report.fencedViolations.length > 0 || stranded.length > 0 || livenessError !== undefined) {
      // The whole history, for whoever debugs it.
      const file = join(tmpdir(), `checker-${basename(worker, '.mjs')}-${Date.now()}.json`);
      writeFileSync(file, JSON.stringify({ faults, stranded, ops }, null, 1));
      console.log(`history written to ${file}`);
    }
    return { report, ops, faults, stranded, livenessMs, livenessError, unanswered };
  } finally {
    await checkApp?.close();
    await killAll();
    // Killed workers' leases would expire in 2 s; revoke them so the cluster is left empty now.
    const { leases } = await client.leaseClient.leaseLeases({});
    for (const lease of leases) await client.leaseClient.leaseRevoke({ ID: lease.ID });
    await client.delete().all();
    expect(await client.getAll().keys()).toEqual([]);
    client.close();
    await Promise.all(proxies.map((proxy) => proxy.close()));
    await cluster.destroy();
  }
}

/** An app in the test process, straight to etcd (no proxy): the "another process" of the liveness property. */
async function checkerApp(endpoints: string[]): Promise<INestApplicationContext> {
  @Module({
    imports: [EtcdLockModule.forRoot({ hosts: endpoints, identity: 'liveness-checker', ttl: 2, requestTimeout: REQUEST_TIMEOUT_MS })],
  })
  class CheckerModule {}
  return NestFactory.createApplicationContext(CheckerModule, { logger: false, abortOnError: false });
}

/** `promise`'s value, or undefined after `ms` (the timer never outlives the race). */
async function bounded<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function workerIdentity(w: NodeProcess): string {
  return w.child.spawnargs[w.child.spawnargs.length - 1];
}
