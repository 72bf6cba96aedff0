/**
 * `npm run bench [-- --cluster] [-- --quick] [-- --scale] [-- --only=id,id] [-- --out=dir]`: starts its own etcd (one node, or three members
 * with --cluster), runs every case against its peer in the same run, prints a table, and writes
 * bench/results/latest.json and bench/results/latest.svg.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { Etcd3 } from 'etcd3';
import { LockService } from 'nestjs-etcd-lock';
import { EtcdCluster } from '../test/harness/cluster.js';
import { ETCD_BIN, EtcdServer, INSTALL_HINT } from '../test/harness/etcd.js';
import { ROOT } from '../test/harness/processes.js';
import { startApp } from './app.js';
import type { BenchContext, CaseResult } from './case.js';
import { decoratorOverhead } from './cases/decorators.js';
import { fanOut } from './cases/fan-out.js';
import { gracefulLeaderHandover, leadershipTransfer } from './cases/elections.js';
import { localContention, tenThousand, tryAcquireHeld, uncontended } from './cases/locks.js';
import { crashFailover, fairness, handover } from './cases/processes.js';
import { sharding } from './cases/sharding.js';
import { telemetryOverhead } from './cases/telemetry.js';
import { fencedWrite, readerThroughput, semaphoreCycle } from './cases/recipes.js';
import { scheduledJobs } from './cases/scheduled.js';
import { dashboardPages } from './cases/dashboard.js';
import { contentionScale } from './cases/contention-scale.js';
import { idleFleet, manyNames } from './cases/fleet-scale.js';
import { shardFleet } from './cases/shard-fleet.js';
import { latencyChart } from './svg.js';

const args = process.argv.slice(2);
const clusterMode = args.includes('--cluster');
const quick = args.includes('--quick');
/** The scale cases (`--scale` runs only these, into `bench/results/scale/`). */
const SCALE_CASES = ['contention-scale', 'shard-fleet', 'idle-fleet', 'many-names'];
const scale = args.includes('--scale');
const only = scale
  ? SCALE_CASES
  : args
      .find((a) => a.startsWith('--only='))
      ?.slice('--only='.length)
      .split(',');
const outDir =
  args.find((a) => a.startsWith('--out='))?.slice('--out='.length) ?? join(ROOT, 'bench', 'results', ...(scale ? ['scale'] : []));
const CRASH_TTL = 2;

function gitDescribe(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit}+dirty` : commit;
  } catch {
    return 'unknown (not a git checkout)';
  }
}
/** Read before the cases run: a commit made meanwhile is not the code measured. */
const measuredCommit = gitDescribe();

let etcdVersion: string;
try {
  etcdVersion = execFileSync(ETCD_BIN, ['--version'], { encoding: 'utf8' }).split('\n')[0];
} catch {
  console.error(`etcd not found (${ETCD_BIN}). ${INSTALL_HINT}`);
  process.exit(1);
}

const log = (text: string) => process.stderr.write(`${text}\n`);
log(`bench: starting ${clusterMode ? 'a 3-member etcd cluster' : 'one etcd'} (${etcdVersion})${quick ? ', quick run' : ''}`);
const etcd = clusterMode ? await EtcdCluster.start() : await EtcdServer.start();
const endpoints = clusterMode ? (etcd as EtcdCluster).endpoints : [(etcd as EtcdServer).endpoint];
const client = new Etcd3({ hosts: endpoints });
const ctx: BenchContext = { endpoints, client, quick };
const etcdPids = () =>
  (clusterMode ? (etcd as EtcdCluster).members : [etcd as EtcdServer]).map((m) => m.pid).filter((pid): pid is number => pid !== undefined);
// One instance for the single-instance cases; a second joins only where a case needs two (its session and
// election traffic would otherwise be part of every measurement).
const appA = await startApp(endpoints, { identity: 'bench-a' });
let appB: INestApplicationContext | undefined;
const second = async () => (appB ??= await startApp(endpoints, { identity: 'bench-b' }));

// Warm up etcd (its first thousands of writes are measurably slower) and this process's JIT before any case,
// so the first case is not the one that pays for it.
log('bench: warming up …');
for (let i = 0; i < (quick ? 300 : 3000); i++) {
  await (await appA.get(LockService).acquire('bench-warmup')).release();
  await client.put('bench-warmup').value('x');
  await client.delete().key('bench-warmup');
}

const cases: Array<[string, () => Promise<CaseResult>]> = [
  ['uncontended', () => uncontended(ctx, appA)],
  ['local-8', () => localContention(ctx, appA)],
  ['try-held', async () => tryAcquireHeld(ctx, appA, await second())],
  ['handover', () => handover(ctx)],
  ['fairness', () => fairness(ctx)],
  ['graceful-leader', async () => gracefulLeaderHandover(ctx, [appA, await second()])],
  ['transfer', () => leadershipTransfer(ctx)],
  ['crash-failover', async () => crashFailover(ctx, await second(), CRASH_TTL)],
  ['decorators', () => decoratorOverhead(ctx)],
  ['held-10k', () => tenThousand(ctx)],
  ['fan-out', () => fanOut(ctx, appA, etcdPids())],
  ['sharding', () => sharding(ctx)],
  ['telemetry', () => telemetryOverhead(ctx)],
  ['semaphore', () => semaphoreCycle(ctx, appA)],
  ['readers', () => readerThroughput(ctx, appA)],
  ['fenced-write', () => fencedWrite(ctx, appA)],
  ['scheduled', () => scheduledJobs(ctx)],
  ['dashboard', () => dashboardPages(ctx)],
  ['contention-scale', () => contentionScale(ctx)],
  ['shard-fleet', () => shardFleet(ctx)],
  ['idle-fleet', () => idleFleet(ctx, etcdPids())],
  ['many-names', () => manyNames(ctx)],
];

const results: CaseResult[] = [];
for (const [id, run] of cases) {
  if (only && !only.includes(id)) continue;
  log(`bench: ${id} …`);
  try {
    const result = await run();
    results.push(result);
    log(`bench: ${id}: ${result.result}`);
  } catch (err) {
    results.push({ id, title: id, target: '', met: false, result: `failed: ${err instanceof Error ? err.stack : err}`, metrics: {} });
  }
}

await Promise.all([appA.close(), appB?.close()]);
const leftovers = {
  keys: (await client.getAll().keys()).length,
  leases: (await client.leaseClient.leaseLeases({})).leases.length,
};
client.close();
await (clusterMode ? (etcd as EtcdCluster).destroy() : (etcd as EtcdServer).destroy());

const mark = (met: boolean | null) => (met === null ? '–' : met ? 'yes' : 'NO');
console.log('\n| case | result | target | met |\n| --- | --- | --- | --- |');
for (const r of results) console.log(`| ${r.title} | ${r.result} | ${r.target} | ${mark(r.met)} |`);
const judged = results.filter((r) => r.met !== null);
console.log(
  `\n${judged.filter((r) => r.met).length} of ${judged.length} targets met; etcd left with ${leftovers.keys} keys, ${leftovers.leases} leases.`,
);

mkdirSync(outDir, { recursive: true });
const meta = {
  date: new Date().toISOString(),
  /** The commit measured (with `+dirty` when the tree had changes), so that a result can be dated by commit. */
  commit: measuredCommit,
  node: process.version,
  etcd: etcdVersion,
  mode: clusterMode ? 'cluster-3' : 'single',
  quick,
  cpus: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  etcdDataDir: 'tmpfs (/dev/shm) when available: fsync is nearly free, so numbers show the client and etcd, not a disk',
};
writeFileSync(
  join(outDir, 'latest.json'),
  `${JSON.stringify({ meta, leftovers, cases: results.map(({ latencies: _, charts: __, ...r }) => r) }, null, 2)}\n`,
);
for (const r of results) for (const [file, svg] of Object.entries(r.charts ?? {})) writeFileSync(join(outDir, file), svg);
const series = results.flatMap((r) => Object.entries(r.latencies ?? {}).map(([label, samples]) => ({ label, samples })));
writeFileSync(join(outDir, 'latest.svg'), latencyChart(series, `nestjs-etcd-lock vs etcd3, ${meta.mode} etcd, ${meta.date.slice(0, 10)}`));
log(`bench: wrote ${join(outDir, 'latest.json')} and latest.svg`);
// etcd3's `Lock` leaves a timer per lease it granted (its 30 s TTL) even after release and client.close(): do
// not wait for them.
process.exit(0);
