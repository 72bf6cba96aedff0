/**
 * `npm run demo [-- --replicas N --duration S]`: a throwaway etcd, N replicas of sample-app as separate
 * processes, a graceful leader stop, a SIGKILL, concurrent withdrawals, and a summary. Leaves nothing behind.
 * Without an etcd binary (none on PATH, and `npm run demo` could not install one), the same scenario runs on the
 * in-memory etcd of `nestjs-etcd-lock/testing`, the replicas as apps in this process.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { EtcdServer, freePort } from '../../test/harness/etcd.js';
import { InMemoryEtcd } from 'nestjs-etcd-lock/testing';
import { InMemoryReplica, loadSampleApp } from './in-memory.js';
import { ProcessReplica, type Replica, type ReplicaSpec } from './replica.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const COLORS = [36, 33, 35, 32, 34, 31];
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin'];
const OPENING_BALANCE = 10_000;
const TTL = 3;
const PREFIX = 'sample/';

const args = parseArgs(process.argv.slice(2));
const started = performance.now();
const elapsed = () => ((performance.now() - started) / 1000).toFixed(1).padStart(5);
const say = (text: string) => console.log(`\x1b[1m[demo ${elapsed()}s]\x1b[0m ${text}`);

/** Where the demo runs: etcd and its replicas, the accounts' data, and the clean-up. */
interface Backend {
  readonly description: string;
  replica(spec: ReplicaSpec): Replica;
  seed(key: string, value: string): Promise<void>;
  balances(): Promise<Record<string, string>>;
  /** The scheduled heartbeat's records (JSON values), oldest fire time first. */
  heartbeats(): Promise<string[]>;
  /** Leaves etcd empty (a crashed replica's lease would only expire after its TTL) and stops it. */
  close(): Promise<void>;
}

/** A real etcd process; replicas are OS processes. Undefined when no etcd binary can be started. */
async function etcdBackend(): Promise<Backend | undefined> {
  let etcd: EtcdServer;
  try {
    etcd = await EtcdServer.start();
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('etcd not found')) return undefined;
    throw err;
  }
  const client = new Etcd3({ hosts: etcd.endpoint });
  return {
    description: `etcd ${etcd.endpoint} started`,
    replica: (spec) => new ProcessReplica(spec, ROOT, etcd.endpoint),
    seed: async (key, value) => void (await client.put(key).value(value)),
    balances: () => client.getAll().prefix(`${PREFIX}accounts/`).strings(),
    heartbeats: async () => Object.values(await client.getAll().prefix(`${PREFIX}job/heartbeat/run/`).sort('Key', 'Ascend').strings()),
    async close() {
      const { leases } = await client.leaseClient.leaseLeases({});
      for (const lease of leases) await client.leaseClient.leaseRevoke({ ID: lease.ID });
      await client.delete().all();
      client.close();
      await etcd.destroy();
    },
  };
}

/** The in-memory etcd; replicas are Nest apps in this process, each on its own connection to it. */
async function inMemoryBackend(): Promise<Backend> {
  const etcd = new InMemoryEtcd();
  const sample = await loadSampleApp(ROOT);
  return {
    description: 'in-memory etcd started (replicas run in this process)',
    replica: (spec) => new InMemoryReplica(spec, sample, etcd),
    seed: async (key, value) => etcd.put(key, value),
    balances: async () => Object.fromEntries(etcd.entries(`${PREFIX}accounts/`).map((e) => [e.key, e.value])),
    heartbeats: async () => etcd.entries(`${PREFIX}job/heartbeat/run/`).map((e) => e.value),
    async close() {
      for (const lease of etcd.leases()) etcd.expireLease(lease);
      etcd.close();
    },
  };
}

interface Failover {
  how: string;
  from: string;
  to: string;
  ms: number;
}

async function main(): Promise<number> {
  const real = args.inMemory ? undefined : await etcdBackend();
  if (!real) {
    console.log(
      'No etcd binary here: this demo runs on the in-memory etcd of nestjs-etcd-lock/testing, all replicas in one ' +
        'process. For the real multi-process demo, install etcd (`node scripts/ensure-etcd.mjs` says how) and run ' +
        '`npm run demo` again.',
    );
  }
  const backend = real ?? (await inMemoryBackend());
  const replicas: Replica[] = [];
  let interrupted = false;
  const onSigint = async () => {
    if (interrupted) return;
    interrupted = true;
    say('interrupted: stopping replicas and etcd');
    await Promise.all(replicas.map((r) => r.stop('SIGTERM')));
    await backend.close();
    process.exit(130);
  };
  process.on('SIGINT', onSigint);

  try {
    say(`${backend.description}; opening ${ACCOUNTS.length} accounts with ${OPENING_BALANCE} each`);
    for (const id of ACCOUNTS) await backend.seed(`${PREFIX}accounts/${id}`, String(OPENING_BALANCE));

    const leaderGained = () => Promise.race(replicas.filter((r) => r.alive).map((r) => r.leadershipGained().then(() => r)));
    // Ports first: an in-memory replica starts as soon as it is constructed, so the replicas are constructed with no
    // await between them and the leadership listener (one could otherwise lead before anyone listens).
    const ports = await Promise.all(Array.from({ length: args.replicas }, () => freePort()));
    for (const [i, port] of ports.entries()) {
      replicas.push(backend.replica({ name: `replica-${i + 1}`, port, color: COLORS[i % COLORS.length], ttl: TTL }));
    }
    const firstLeader = leaderGained();
    await Promise.all(replicas.map((r) => r.ready()));
    let leader = await firstLeader;
    say(`${replicas.length} replicas up; ${leader.name} leads`);

    const failovers: Failover[] = [];
    const failover = async (how: string, signal: 'SIGTERM' | 'SIGKILL') => {
      const old = leader;
      const next = leaderGained();
      const t0 = performance.now();
      say(`${how}: ${signal} to the leader, ${old.name}`);
      const stopped = old.stop(signal);
      leader = await next;
      const ms = Math.round(performance.now() - t0);
      failovers.push({ how, from: old.name, to: leader.name, ms });
      say(`${leader.name} leads ${ms} ms after the ${signal}`);
      await stopped;
    };

    const shardViews: Array<[string, Record<string, number[]>]> = [];
    const viewShards = async (when: string) => {
      const owners = await settledShards(replicas.filter((r) => r.alive));
      shardViews.push([when, owners]);
      say(
        `tenant shards ${when}: ${Object.entries(owners)
          .map(([who, list]) => `${who} ${list.length}`)
          .join(', ')}`,
      );
    };
    await viewShards('at start');

    await pause(args.duration * 0.25);
    await failover('graceful stop', 'SIGTERM');
    await viewShards('after the graceful stop');

    await pause(args.duration * 0.2);
    const withdrawals = await fireWithdrawals(replicas.filter((r) => r.alive));
    say(`withdrawals: ${withdrawals.accepted} accepted, ${withdrawals.refused} refused, ${withdrawals.failed} failed`);

    if (replicas.filter((r) => r.alive).length >= 2) {
      await pause(args.duration * 0.15);
      await failover('crash', 'SIGKILL');
      await viewShards('after the crash');
    }

    await pause(args.duration * 0.4);
    const scraped = await Promise.all(replicas.filter((r) => r.alive).map(async (r) => [r.name, await scrape(r.port)] as const));
    say('stopping the remaining replicas (SIGTERM)');
    await Promise.all(replicas.map((r) => r.stop('SIGTERM')));

    const balances = await backend.balances();
    const heartbeats = summarizeHeartbeats(await backend.heartbeats());
    const total = Object.values(balances).reduce((sum, v) => sum + Number(v), 0);
    const expected = ACCOUNTS.length * OPENING_BALANCE - withdrawals.acceptedAmount;
    const negative = Object.values(balances).some((v) => Number(v) < 0);

    console.log(`\nSummary${real ? '' : ' (in-memory etcd)'}`);
    table(
      ['leader change', 'from', 'to', 'failover'],
      failovers.map((f) => [f.how, f.from, f.to, `${f.ms} ms`]),
    );
    table(
      ['replica', 'leader ticks', 'report runs', 'ended'],
      replicas.map((r) => [r.name, String(r.leaderTicks), String(r.reportRuns), endedHow(r, failovers)]),
    );
    table(
      ['heartbeat (@ScheduledJob, every second)', 'fire times', ...replicas.map((r) => r.name)],
      Object.entries(heartbeats.byKind).map(([kind, byReplica]) => [
        `run ${kind}`,
        String(Object.values(byReplica).reduce((a, b) => a + b, 0)),
        ...replicas.map((r) => String(byReplica[r.name] ?? 0)),
      ]),
    );
    table(
      ['tenant shards (16)', ...shardViews.map(([when]) => when)],
      replicas.map((r) => [r.name, ...shardViews.map(([, owners]) => (owners[r.name] ?? []).join(' ') || '—')]),
    );
    table(
      ['withdrawals', 'count', 'amount'],
      [
        ['accepted', String(withdrawals.accepted), String(withdrawals.acceptedAmount)],
        ['refused (insufficient funds)', String(withdrawals.refused), '—'],
        ['failed', String(withdrawals.failed), '—'],
      ],
    );
    if (scraped.some(([, m]) => m)) {
      const row = (name: string, m: Map<string, number>) => [
        name,
        String(m.get('etcd_lock_lock_wait_duration_count') ?? 0),
        String(m.get('etcd_lock_lock_held') ?? 0),
        String(m.get('etcd_lock_leadership_terms_total') ?? 0),
        String(m.get('etcd_lock_shards_owned') ?? 0),
        String(m.get('etcd_lock_etcd_request_duration_count') ?? 0),
        `${(((m.get('etcd_lock_etcd_request_duration_sum') ?? 0) / (m.get('etcd_lock_etcd_request_duration_count') || 1)) * 1000).toFixed(2)} ms`,
      ];
      table(
        ['GET /metrics before the stop', 'lock waits', 'locks held', 'terms', 'shards owned', 'etcd requests', 'mean request'],
        scraped.flatMap(([name, m]) => (m ? [row(name, m)] : [])),
      );
    }
    table(
      ['account', 'final balance'],
      Object.entries(balances).map(([k, v]) => [k.split('/').pop() as string, v]),
    );
    console.log(
      `\nHeartbeat: ${heartbeats.fireTimes} fire times from ${heartbeats.from} to ${heartbeats.to}; ` +
        `${heartbeats.ranOnce} ran once, ${heartbeats.missing} lost, ${heartbeats.twice} ran twice` +
        (heartbeats.abandoned > 0 ? ` (${heartbeats.abandoned} abandoned by the crashed replica and run again)` : ''),
    );
    console.log(
      'Each fire time, in order: the replica that ran it on time, r run again after its replica died, ' +
        `c caught up, · lost, ! ran twice\n  ${heartbeats.from} ${heartbeats.timeline} ${heartbeats.to}`,
    );
    const ok = total === expected && !negative && withdrawals.failed === 0 && heartbeats.missing === 0 && heartbeats.twice === 0;
    console.log(
      `\nMoney: ${ACCOUNTS.length * OPENING_BALANCE} opening - ${withdrawals.acceptedAmount} withdrawn = ${expected}; ` +
        `balances add up to ${total}: ${ok ? 'no money lost or created' : 'INVARIANT BROKEN'}`,
    );
    return ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
    await backend.close();
  }
}

/**
 * The tenant shards' owners once every shard has one and the live replicas share them evenly (asked of a live
 * replica's `/shards`, which reads etcd: after a crash that takes the dead replica's lease TTL).
 */
async function settledShards(live: Replica[]): Promise<Record<string, number[]>> {
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${live[0].port}/shards`);
      const { owners } = (await res.json()) as { owners: Record<string, number[]> };
      const counts = live.map((r) => owners[r.name]?.length ?? 0);
      const total = Object.values(owners).reduce((n, list) => n + list.length, 0);
      if (total === 16 && Object.keys(owners).length === live.length && Math.max(...counts) - Math.min(...counts) <= 1) {
        return owners;
      }
    } catch {
      // the replica is busy starting or stopping: ask again
    }
    await pause(0.1); // a demo script reading the state, not the library waiting
  }
}

/**
 * The heartbeat job's history: every fire time from the first recorded to the last, which replica ran it and how
 * (scheduled, caught up, retried after its replica died), and whether any was lost (no record, or none ended ok)
 * or ran to completion twice.
 */
function summarizeHeartbeats(values: string[]) {
  const records = values.map(
    (v) => JSON.parse(v) as { fireTime: number; attempts: Array<{ kind: string; identity?: string; outcome: string }> },
  );
  const times = records.map((r) => r.fireTime);
  const byKind: Record<string, Record<string, number>> = {};
  let ranOnce = 0;
  let twice = 0;
  let abandoned = 0;
  for (const record of records) {
    const ok = record.attempts.filter((a) => a.outcome === 'ok');
    abandoned += record.attempts.filter((a) => a.outcome === 'abandoned').length;
    if (ok.length === 1) ranOnce++;
    if (ok.length > 1) twice++;
    for (const attempt of ok) {
      const kind = attempt.kind === 'scheduled' ? 'on time' : attempt.kind;
      byKind[kind] ??= {};
      byKind[kind][attempt.identity ?? '?'] = (byKind[kind][attempt.identity ?? '?'] ?? 0) + 1;
    }
  }
  const first = Math.min(...times);
  const last = Math.max(...times);
  const fireTimes = records.length === 0 ? 0 : (last - first) / 1000 + 1;
  const clock = (t: number) => new Date(t).toISOString().slice(11, 19);
  // Every fire time, in order: the number of the replica that ran it on time, or how it ran otherwise.
  const byTime = new Map(records.map((r) => [r.fireTime, r.attempts.filter((a) => a.outcome === 'ok')]));
  const mark = (ok: Array<{ kind: string; identity?: string }> | undefined) => {
    if (!ok || ok.length === 0) return '·';
    if (ok.length > 1) return '!';
    if (ok[0].kind === 'scheduled') return ok[0].identity?.split('-').pop() ?? '?';
    return ({ retried: 'r', 'caught-up': 'c', manual: 'm' } as Record<string, string>)[ok[0].kind] ?? '?';
  };
  const timeline = Array.from({ length: fireTimes }, (_, i) => mark(byTime.get(first + i * 1000))).join('');
  return {
    timeline,
    fireTimes,
    from: records.length ? clock(first) : '—',
    to: records.length ? clock(last) : '—',
    byKind,
    ranOnce,
    twice,
    abandoned,
    missing: fireTimes - ranOnce - twice,
  };
}

/** Concurrent withdrawals at every live replica: 40 per replica, random accounts and amounts. */
async function fireWithdrawals(targets: Replica[]) {
  const result = { accepted: 0, refused: 0, failed: 0, acceptedAmount: 0 };
  const requests = targets.flatMap((replica) =>
    Array.from({ length: 40 }, async () => {
      const account = ACCOUNTS[Math.floor(Math.random() * ACCOUNTS.length)];
      const amount = 1 + Math.floor(Math.random() * 1500);
      try {
        const res = await fetch(`http://127.0.0.1:${replica.port}/accounts/${account}/withdraw`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ amount }),
        });
        const body = (await res.json()) as { accepted?: boolean };
        if (res.ok && body.accepted) {
          result.accepted++;
          result.acceptedAmount += amount;
        } else if (res.ok) result.refused++;
        else result.failed++;
      } catch {
        result.failed++;
      }
    }),
  );
  await Promise.all(requests);
  return result;
}

function endedHow(replica: Replica, failovers: Failover[]): string {
  const f = failovers.find((x) => x.from === replica.name);
  if (f) return f.how === 'crash' ? 'SIGKILL' : 'SIGTERM (mid-run)';
  return 'SIGTERM (end)';
}

/** A replica's `GET /metrics` (Prometheus text), each metric summed over its labels; undefined if it serves none. */
async function scrape(port: number): Promise<Map<string, number> | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
  if (!res?.ok) return undefined;
  const sums = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const match = /^([a-z_]+)(?:\{[^}]*\})? ([-\d.e+]+)$/i.exec(line);
    if (match) sums.set(match[1], (sums.get(match[1]) ?? 0) + Number(match[2]));
  }
  return sums;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

function pause(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

function parseArgs(argv: string[]): { replicas: number; duration: number; inMemory: boolean } {
  const out = { replicas: 3, duration: 24, inMemory: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], Number(argv[i + 1])];
    if (flag === '--in-memory') out.inMemory = true;
    else if ((flag === '--replicas' || flag === '--duration') && Number.isInteger(value)) {
      out[flag === '--replicas' ? 'replicas' : 'duration'] = value;
      i++;
    } else {
      console.error(`usage: npm run demo -- [--replicas N (2-6)] [--duration S (12-600)] [--in-memory]; got '${flag}'`);
      process.exit(2);
    }
  }
  if (out.replicas < 2 || out.replicas > 6) throw new Error('--replicas must be between 2 and 6');
  if (out.duration < 12 || out.duration > 600) throw new Error('--duration must be between 12 and 600 seconds');
  return out;
}

process.exitCode = await main();
