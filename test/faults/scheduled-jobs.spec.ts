import { once } from 'node:events';
import { Etcd3 } from 'etcd3';
import { EtcdCluster } from '../harness/cluster.js';
import { forgetFaketimeState, skewedClock } from '../harness/faketime.js';
import { killAll, NodeProcess } from '../harness/processes.js';

/**
 * Scheduled jobs across OS processes whose wall clocks differ by up to ±2 s (libfaketime), on a 3-member etcd
 * cluster, under a nemesis that kills and pauses replicas (the runner mid-run too), stops every replica for 5 s,
 * and kills etcd members. Each run writes a ledger entry fenced by its token; a checker reads the history and the
 * ledger: with catch-up, every fire time in the window ran to completion exactly once; without, at most once.
 */
const TTL = 2;
const WINDOW_MS = 60_000;
const SKEWS: Record<string, number> = { a: -2000, b: 0, c: 2000 };

interface Line {
  identity: string;
  event: 'ready' | 'start' | 'end';
  job?: string;
  fireTime?: number;
  kind?: string;
  attempt?: number;
  token?: string;
  /** When, by the replica's own (skewed) clock. */
  at?: number;
}

interface Attempt {
  kind: string;
  identity?: string;
  outcome: string;
  token?: string;
  error?: string;
}

let cluster: EtcdCluster;
let client: Etcd3;

beforeAll(async () => {
  cluster = await EtcdCluster.start();
  client = new Etcd3({ hosts: cluster.endpoints });
});

afterEach(async () => {
  await killAll();
  for (const member of cluster.members) {
    member.resume();
    if (!member.running) await cluster.restart(member);
  }
  // History outlives replicas: the test removes it, and leaves the cluster clean.
  await client.delete().prefix('job/');
  await client.delete().prefix('ledger/');
  expect(await client.getAll().keys()).toEqual([]);
});

afterAll(async () => {
  client?.close();
  await cluster?.destroy();
});

class Replica {
  process: NodeProcess;
  readonly lines: Line[] = [];

  constructor(readonly identity: string) {
    this.process = this.spawn();
  }

  private spawn(): NodeProcess {
    const child = new NodeProcess(
      'test/workers/job-worker.mjs',
      [cluster.endpoints.join(','), this.identity, String(TTL)],
      skewedClock(SKEWS[this.identity]),
      forgetFaketimeState,
    );
    return child;
  }

  ready(): Promise<string> {
    return this.process.line((l) => l.includes('"event":"ready"'));
  }

  /** Resolves with the next run this replica starts (after the lines it printed so far). */
  nextStart(job?: string): Promise<string> {
    return this.process.line((l) => l.includes('"event":"start"') && (!job || l.includes(`"job":"${job}"`)), this.process.lines.length);
  }

  collect(): void {
    for (const line of this.process.lines) if (line.startsWith('{')) this.lines.push(JSON.parse(line) as Line);
  }

  async crash(): Promise<void> {
    this.process.kill('SIGKILL');
    await this.process.exited;
    this.collect();
  }

  async restart(): Promise<void> {
    this.process = this.spawn();
    await this.ready();
  }

  async stop(): Promise<void> {
    this.process.send('stop');
    await this.process.exited;
    this.collect();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The first replica to start a run from now on, and that run. */
function runner(replicas: Replica[], job?: string): Promise<{ replica: Replica; run: Line }> {
  return Promise.race(replicas.map((r) => r.nextStart(job).then((line) => ({ replica: r, run: JSON.parse(line) as Line }))));
}

async function records(job: string): Promise<Map<number, Attempt[]>> {
  const kvs = await client.getAll().prefix(`job/${job}/run/`).exec();
  const byFireTime = new Map<number, Attempt[]>();
  for (const kv of kvs.kvs) {
    const record = JSON.parse(kv.value.toString()) as { fireTime: number; attempts: Attempt[] };
    byFireTime.set(record.fireTime, record.attempts);
  }
  return byFireTime;
}

async function ledger(job: string): Promise<Map<number, string[]>> {
  const keys = await client.getAll().prefix(`ledger/${job}/`).keys();
  const byFireTime = new Map<number, string[]>();
  for (const key of keys) {
    const [, , fireTime, token] = key.split('/');
    byFireTime.set(Number(fireTime), [...(byFireTime.get(Number(fireTime)) ?? []), token]);
  }
  return byFireTime;
}

describe('scheduled jobs under the nemesis (3 OS processes, clocks ±2 s apart, a 3-member cluster)', () => {
  it('with catch-up every fire time in the window runs to completion exactly once; without, at most once', async () => {
    const replicas = Object.keys(SKEWS).map((id) => new Replica(id));
    await Promise.all(replicas.map((r) => r.ready()));
    const from = Date.now() + 1000;
    const until = from + WINDOW_MS;
    const done: string[] = [];
    /** Runs whose replica was killed mid-run: when (by this process's clock, which is not skewed). */
    const killed: Array<{ job: string; fireTime: number; at: number }> = [];
    const actions: Array<() => Promise<void>> = [
      async () => {
        // The runner of the job that retries dies mid-run.
        const { replica: victim, run } = await runner(replicas, 'exactly-once');
        await victim.crash();
        killed.push({ job: run.job as string, fireTime: run.fireTime as number, at: Date.now() });
        await sleep(1000);
        await victim.restart();
        done.push(`killed ${victim.identity} mid-run`);
      },
      async () => {
        // The runner pauses mid-run, past its TTL: its hold ends; its late ledger write must fail.
        const { replica: victim } = await runner(replicas);
        victim.process.kill('SIGSTOP');
        await sleep(TTL * 1000 + 1500);
        victim.process.kill('SIGCONT');
        done.push(`paused ${victim.identity} mid-run`);
      },
      async () => {
        const member = await cluster.leader();
        await member.stop('SIGKILL');
        await sleep(3000);
        await cluster.restart(member);
        done.push('killed the raft leader');
      },
      async () => {
        // Every replica down for 5 s: the fire times meanwhile are caught up when they come back.
        await Promise.all(replicas.map((r) => r.crash()));
        await sleep(5000);
        await Promise.all(replicas.map((r) => r.restart()));
        done.push('all replicas down for 5 s');
      },
    ];
    for (let i = 0; Date.now() < until - 8000; i++) {
      await actions[i % actions.length]();
      await sleep(1500);
    }
    await sleep(Math.max(0, until - Date.now()));

    // Let retries and catch-up finish: every fire time of the window recorded, none running.
    const inWindow = (t: number) => t >= from && t < until;
    const settled = async () => {
      const runs = await records('exactly-once');
      return (
        [...runs].every(([, attempts]) => attempts[attempts.length - 1].outcome !== 'running') &&
        Array.from({ length: WINDOW_MS / 1000 }, (_, k) => Math.ceil(from / 1000) * 1000 + k * 1000)
          .filter(inWindow)
          .every((t) => runs.has(t))
      );
    };
    const watcher = await client.watch().prefix('job/exactly-once/').create();
    try {
      const deadline = Date.now() + 20_000;
      while (!(await settled()) && Date.now() < deadline) {
        await Promise.race([once(watcher, 'data'), sleep(deadline - Date.now())]);
      }
    } finally {
      await watcher.cancel();
    }
    await Promise.all(replicas.map((r) => r.stop()));

    const fireTimes = Array.from({ length: WINDOW_MS / 1000 }, (_, k) => Math.ceil(from / 1000) * 1000 + k * 1000).filter(inWindow);
    const exactly = await records('exactly-once');
    const exactlyLedger = await ledger('exactly-once');
    const counts = { fireTimes: fireTimes.length, ok: 0, retried: 0, caughtUp: 0, abandonedAttempts: 0, doubles: 0, missing: 0 };
    const problems: string[] = [];
    for (const t of fireTimes) {
      const attempts = exactly.get(t);
      const written = exactlyLedger.get(t) ?? [];
      if (!attempts) {
        counts.missing++;
        problems.push(`${new Date(t).toISOString()}: no record`);
        continue;
      }
      const last = attempts[attempts.length - 1];
      counts.abandonedAttempts += attempts.filter((a) => a.outcome === 'abandoned').length;
      if (attempts.some((a) => a.kind === 'retried')) counts.retried++;
      if (attempts[0].kind === 'caught-up') counts.caughtUp++;
      if (last.outcome === 'ok') counts.ok++;
      else problems.push(`${new Date(t).toISOString()}: ended ${last.outcome}${last.error ? ` (${last.error})` : ''}`);
      if (written.length !== 1) {
        if (written.length > 1) counts.doubles++;
        problems.push(`${new Date(t).toISOString()}: ${written.length} ledger entries`);
      } else if (written[0] !== last.token) problems.push(`${new Date(t).toISOString()}: the ledger's token is not the ok attempt's`);
      const tokens = attempts.map((a) => BigInt(a.token ?? '0'));
      if (tokens.some((token, i) => i > 0 && token <= tokens[i - 1])) problems.push(`${new Date(t).toISOString()}: tokens not increasing`);
    }
    // How long after its replica's death a run started again elsewhere (the retry's `at`, unskewed).
    const lines = replicas.flatMap((r) => r.lines);
    const retryDelays = killed
      .filter((k) => k.job === 'exactly-once')
      .map((k) => {
        const retry = lines.find((l) => l.event === 'start' && l.job === k.job && l.fireTime === k.fireTime && l.kind === 'retried');
        return retry ? (retry.at as number) - SKEWS[retry.identity] - k.at : Number.NaN;
      });
    const atMost = await ledger('at-most-once');
    const atMostDoubles = [...atMost.values()].filter((tokens) => tokens.length > 1).length;
    const atMostRan = fireTimes.filter((t) => (atMost.get(t)?.length ?? 0) === 1).length;
    console.log(
      `scheduled jobs under the nemesis (${done.join(', ')}): exactly-once ${JSON.stringify(counts)}; retried after a kill mid-run in ${retryDelays.map((ms) => `${ms} ms`).join(', ') || '(no kill hit this job)'} (TTL ${TTL} s); at-most-once ran ${atMostRan} of ${fireTimes.length}, ${atMostDoubles} twice`,
    );
    expect(problems).toEqual([]);
    expect(counts.ok).toBe(fireTimes.length);
    expect(atMostDoubles).toBe(0);
    // The nemesis did its work: runs were abandoned and retried, and fire times were caught up.
    expect(counts.abandonedAttempts).toBeGreaterThan(0);
    expect(counts.caughtUp).toBeGreaterThan(0);
    // Each run killed mid-run was run again elsewhere.
    expect(retryDelays.filter((ms) => Number.isNaN(ms))).toEqual([]);
  }, 150_000);
});
