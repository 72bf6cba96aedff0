import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import type { IRequestOp } from 'etcd3';
import { Interval } from '@nestjs/schedule';
import { filter, firstValueFrom, merge } from 'rxjs';
import {
  EtcdLockEventName,
  EtcdLockEvents,
  EtcdSessionService,
  InvalidArgumentError,
  type JobRunEvent,
  type LockLostEvent,
  ScheduledJob,
  ScheduledJobsService,
  UnknownJobError,
} from '../lib/index.js';
import { ManualClock } from '../lib/testing/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { runCli } from './harness/cli.js';
import { useEtcd } from './harness/fixtures.js';

// Before the fixture's own check that etcd is left clean (hooks run in the order they are declared).
afterEach(async () => {
  gate?.open();
  gate = undefined;
  await closeAndForget();
  runs.length = 0;
});

const etcd = useEtcd();

/** Every run of every app in this file: which replica ran which fire time, how, with which token. */
const runs: Array<{ job: string; identity: string; fireTime: number; kind: string; attempt: number; token: bigint }> = [];
/** A run waits here while a test holds it (a long run, a run whose replica dies). */
let gate: { opened: Promise<void>; open: () => void } | undefined;
const entered: Array<() => void> = [];

function record(sessions: EtcdSessionService) {
  const run = ScheduledJobsService.currentRun();
  const hold = ScheduledJobsService.current();
  if (!run || !hold) throw new Error('a scheduled run without its hold');
  runs.push({
    job: run.job,
    identity: sessions.status().identity,
    fireTime: run.fireTime.getTime(),
    kind: run.kind,
    attempt: run.attempt,
    token: hold.fencingToken,
  });
  for (const wake of entered.splice(0)) wake();
  return gate?.opened;
}

/** The next end of a run of `kind` on any of `apps` (whichever replica claimed it tells of its end). */
function runEnded(apps: INestApplicationContext[], kind: string): Promise<JobRunEvent> {
  return firstValueFrom(
    merge(...apps.map((app) => app.get(EtcdLockEvents).events$)).pipe(
      filter((e): e is JobRunEvent => e.type === EtcdLockEventName.JobRunEnded && e.run.kind === kind),
    ),
  );
}

function whenEntered(): Promise<void> {
  return new Promise((resolve) => entered.push(resolve));
}

function closedGate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

@Injectable()
class Reports {
  constructor(private readonly sessions: EtcdSessionService) {}

  @ScheduledJob('report', { retries: 1 })
  @Interval(1000)
  async report() {
    await record(this.sessions);
    return 'ran';
  }

  // A run that the next fire time cancels: it reads its own signal.
  @ScheduledJob('refresh', { overlap: 'cancel-previous' })
  @Interval(1000)
  async refresh() {
    const hold = ScheduledJobsService.current();
    await record(this.sessions);
    return hold?.signal.aborted ? 'cancelled' : 'refreshed';
  }

  // A fire time that comes while a run goes on waits for it; one waits, later ones are skipped.
  @ScheduledJob('digest', { overlap: 'buffer-one' })
  @Interval(1000)
  async digest() {
    await record(this.sessions);
    return 'digested';
  }

  // The other decorator order, no retries, and overlapping runs allowed.
  @Interval(1000)
  @ScheduledJob('sweep', { overlap: 'allow' })
  async sweep() {
    await record(this.sessions);
    return 'swept';
  }
}

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const apps: INestApplicationContext[] = [];

async function replica(identity: string, clock?: ManualClock) {
  const app = await etcd.app({ identity, ttl: clock ? 60 : 5, ...(clock ? { clock } : {}) }, [], [Reports]);
  apps.push(app);
  return app;
}

/** Closes the apps and removes the jobs' records: history outlives replicas, and the test must leave etcd clean. */
async function closeAndForget() {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await etcd.client.delete().prefix('job/');
}

/**
 * Counts the unary requests `apps` send about `job` (any key under `job/<job>/`). Only those: a replica's election
 * joins at start-up without being awaited, so its requests may come during a test's window (seen once in a full run
 * on a busy machine), and they are not the job's.
 */
function jobRequests(apps: INestApplicationContext[], job: string): () => number {
  const prefix = Buffer.from(`job/${job}/`);
  const about = (key: Buffer | undefined) => key !== undefined && Buffer.from(key).subarray(0, prefix.length).equals(prefix);
  const ops = (ops: IRequestOp[] | undefined) =>
    (ops ?? []).some((op) => about(op.request_put?.key) || about(op.request_range?.key) || about(op.request_delete_range?.key));
  let count = 0;
  for (const app of apps) {
    const port = app.get(EtcdConnection).port;
    const { txn, range, deleteRange } = port;
    port.txn = (req, ...rest) => {
      if (req.compare?.some((c) => about(c.key)) || ops(req.success) || ops(req.failure)) count++;
      return txn.call(port, req, ...rest);
    };
    port.range = (req, ...rest) => {
      if (about(req.key)) count++;
      return range.call(port, req, ...rest);
    };
    port.deleteRange = (req, ...rest) => {
      if (about(req.key)) count++;
      return deleteRange.call(port, req, ...rest);
    };
  }
  return () => count;
}

describe('@ScheduledJob', () => {
  it('runs a fire time once across replicas; the others skip with one request each; the history records it', async () => {
    const clock = new ManualClock(T0 + 300);
    const replicas = await Promise.all(['a', 'b', 'c'].map((id) => replica(id, clock)));
    const sent = jobRequests(replicas, 'report');
    const results = await Promise.all(replicas.map((app) => app.get(Reports).report()));
    expect(results.filter((r) => r === 'ran')).toHaveLength(1);
    expect(runs).toEqual([expect.objectContaining({ job: 'report', fireTime: T0, kind: 'scheduled', attempt: 1 })]);
    // The claimer: claim, retention read, record, release (4); each other replica: its claim (1).
    expect(sent()).toBeGreaterThanOrEqual(4);
    expect(sent()).toBeLessThanOrEqual(4 + 2);

    const history = await replicas[0].get(ScheduledJobsService).history('report');
    expect(history).toEqual([
      expect.objectContaining({
        job: 'report',
        fireTime: new Date(T0),
        kind: 'scheduled',
        attempt: 1,
        outcome: 'ok',
        identity: runs[0].identity,
      }),
    ]);
    expect(history[0].fencingToken).toBe(runs[0].token);
    expect(history[0].endedAt?.getTime()).toBeGreaterThanOrEqual(history[0].startedAt?.getTime() ?? Number.NaN);
  });

  it('skips with no request a fire time whose record its watch has seen; the next fire time it claims and runs', async () => {
    const clock = new ManualClock(T0 + 300);
    const [a, b] = [await replica('a', clock), await replica('b', clock)];
    const seen = b.get(ScheduledJobsService).nextRunEnd('report');
    expect(await a.get(Reports).report()).toBe('ran');
    await seen; // b's watch saw the run's hold go, after its record
    const sent = jobRequests([b], 'report');
    expect(await b.get(Reports).report()).toBeUndefined();
    expect(sent()).toBe(0);
    await clock.advance(1000);
    expect(await b.get(Reports).report()).toBe('ran');
    expect(sent()).toBeGreaterThanOrEqual(4); // the count sees the job's requests: its claim, read, record, release
    expect(runs.map((r) => [r.identity, r.fireTime - T0])).toEqual([
      ['a', 0],
      ['b', 1000],
    ]);
  });

  it('names a fire time by the schedule, not by a replica’s clock: replicas 2 s early and late claim the same one', async () => {
    const early = new ManualClock(T0 - 2000);
    const late = new ManualClock(T0 + 2000);
    const [a, b] = [await replica('early', early), await replica('late', late)];
    // Each replica's timer fires at the fire time by its own clock: T0 + 5 s.
    await early.advanceTo(T0 + 5000);
    expect(await a.get(Reports).report()).toBe('ran');
    await late.advanceTo(T0 + 5000);
    expect(await b.get(Reports).report()).toBeUndefined();
    expect(runs.map((r) => [r.identity, r.fireTime])).toEqual([['early', T0 + 5000]]);
  });

  it('a run whose replica dies is recorded abandoned and run again elsewhere with a higher token (retries: 1)', async () => {
    const [a, b] = [await replica('a'), await replica('b')];
    gate = closedGate();
    const inside = whenEntered();
    const first = a.get(Reports).report();
    await inside;
    const retried = runEnded([b], 'retried');
    // a's lease is revoked from outside (as etcd expires a dead replica's) while its run still waits at the gate:
    // its hold goes with it, b retries the fire time, and a's run, let go only then, cannot record its end.
    const leaseId = a.get(EtcdSessionService).status().leaseId as string;
    const retryEntered = whenEntered();
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${leaseId}`).toString() });
    await retryEntered;
    gate?.open();
    const ended = await retried;
    await first.catch(() => undefined);
    expect(ended.run).toMatchObject({ job: 'report', attempt: 2, outcome: 'ok', identity: 'b' });
    const history = await b.get(ScheduledJobsService).history('report');
    expect(history.map((r) => [r.attempt, r.identity, r.outcome, r.kind])).toEqual([
      [2, 'b', 'ok', 'retried'],
      [1, 'a', 'abandoned', 'scheduled'],
    ]);
    expect(history[0].fencingToken).toBeGreaterThan(history[1].fencingToken as bigint);
  });

  it('catches up the fire times missed while every replica was down, each once', async () => {
    const clock = new ManualClock(T0 + 100);
    const first = await replica('a', clock);
    expect(await first.get(Reports).report()).toBe('ran');
    await closeAndForgetApps();
    await clock.advance(5000); // all down for 5 s: T0+1 s … T0+5 s pass unrun
    await Promise.all([replica('a', clock), replica('b', clock)]);
    await untilRuns(6);
    const fireTimes = runs.map((r) => r.fireTime - T0).sort((x, y) => x - y);
    expect(fireTimes).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
    expect(runs.slice(1).every((r) => r.kind === 'caught-up')).toBe(true);
  });

  it('catches up ticks the running fleet missed (no session began): found between records when a run ends', async () => {
    const clock = new ManualClock(T0 + 100);
    const app = await replica('a', clock);
    expect(await app.get(Reports).report()).toBe('ran');
    await clock.advance(3000); // the ticks of T0+1 s and T0+2 s never came (etcd unreachable for a moment, say)
    expect(await app.get(Reports).report()).toBe('ran');
    await untilRuns(4);
    expect(runs.map((r) => [r.fireTime - T0, r.kind])).toEqual([
      [0, 'scheduled'],
      [3000, 'scheduled'],
      [1000, 'caught-up'],
      [2000, 'caught-up'],
    ]);
  });

  it('pause stops every replica; resume runs again; trigger runs once, recorded as manual', async () => {
    const clock = new ManualClock(T0 + 100);
    const [a, b] = [await replica('a', clock), await replica('b', clock)];
    await a.get(ScheduledJobsService).pause('report');
    expect(await Promise.all([a, b].map((app) => app.get(Reports).report()))).toEqual([undefined, undefined]);
    expect((await b.get(ScheduledJobsService).list()).find((j) => j.name === 'report')).toMatchObject({
      paused: true,
      schedule: 'every 1000 ms',
    });
    await b.get(ScheduledJobsService).resume('report');
    await clock.advance(1000);
    expect((await Promise.all([a, b].map((app) => app.get(Reports).report()))).filter(Boolean)).toEqual(['ran']);
    const manual = runEnded([a, b], 'manual');
    await a.get(ScheduledJobsService).trigger('report');
    expect((await manual).run.outcome).toBe('ok');
    const history = await a.get(ScheduledJobsService).history('report');
    expect(history.map((r) => [r.kind, r.outcome])).toEqual([
      ['manual', 'ok'],
      ['scheduled', 'ok'],
    ]);
  });

  it('skips a fire time while a run goes on (recorded as skipped), unless overlap is allowed', async () => {
    const clock = new ManualClock(T0 + 100);
    const [a, b] = [await replica('a', clock), await replica('b', clock)];
    gate = closedGate();
    const inside = whenEntered();
    const long = a.get(Reports).report();
    const longSweep = a.get(Reports).sweep();
    await inside;
    await clock.advance(1000);
    const allowed = whenEntered();
    expect(await b.get(Reports).report()).toBeUndefined();
    const sweep = b.get(Reports).sweep();
    await allowed;
    gate.open();
    expect(await Promise.all([long, longSweep, sweep])).toEqual(['ran', 'swept', 'swept']);
    const history = await a.get(ScheduledJobsService).history('report');
    expect(history.map((r) => [r.fireTime.getTime() - T0, r.outcome])).toEqual([
      [1000, 'skipped'],
      [0, 'ok'],
    ]);
  });

  it('is controlled from the CLI: pause stops every replica, resume and trigger run it, history shows each', async () => {
    const [a, b] = [await replica('a'), await replica('b')];
    const cli = (...args: string[]) => runCli(['--endpoints', etcd.endpoint, 'jobs', ...args]);
    expect(await cli('pause', 'report')).toMatchObject({ code: 0, stdout: 'pause: report\n' });
    expect(await Promise.all([a, b].map((app) => app.get(Reports).report()))).toEqual([undefined, undefined]);
    const listed = JSON.parse((await cli('list', '--json')).stdout) as Array<{ name: string; paused: boolean; schedule: string }>;
    expect(listed).toEqual([
      expect.objectContaining({ name: 'digest', paused: false }),
      expect.objectContaining({ name: 'refresh', paused: false }),
      expect.objectContaining({ name: 'report', paused: true, schedule: 'every 1000 ms' }),
      expect.objectContaining({ name: 'sweep', paused: false }),
    ]);
    expect((await cli('resume', 'report')).code).toBe(0);
    const manual = runEnded([a, b], 'manual');
    expect((await cli('trigger', 'report')).code).toBe(0);
    expect((await manual).run.outcome).toBe('ok');
    const history = await cli('history', 'report');
    expect(history.code).toBe(0);
    expect(history.stdout.split('\n')[0]).toMatch(/^fire time +attempt +kind +outcome +replica +took +token +error$/);
    expect(history.stdout).toMatch(/ 1 +manual +ok +[ab] +\d+ ms +\d+/);
    expect(await cli('history', 'nope')).toMatchObject({
      code: 5,
      stderr: "nestjs-etcd-lock: no scheduled job 'nope' (no replica declared it)\n",
    });
  });

  it('cancels the run going on when the next fire time comes (overlap: cancel-previous): its signal aborts, its record says so', async () => {
    const clock = new ManualClock(T0 + 100);
    const [a, b] = [await replica('a', clock), await replica('b', clock)];
    gate = closedGate();
    const inside = whenEntered();
    const first = a.get(Reports).refresh();
    await inside;
    await clock.advance(1000); // the next fire time (a's watch of its hold, due 20 ms after its claim, is made meanwhile)
    const lost = firstValueFrom(
      a.get(EtcdLockEvents).events$.pipe(filter((e): e is LockLostEvent => e.type === EtcdLockEventName.LockLost && e.kind === 'job')),
    );
    const entered = whenEntered();
    const next = b.get(Reports).refresh();
    expect(await lost).toMatchObject({ name: 'refresh', reason: 'key-deleted' });
    await entered;
    gate.open();
    expect(await next).toBe('refreshed');
    expect(await first).toBe('cancelled');
    const history = await b.get(ScheduledJobsService).history('refresh');
    expect(history.map((r) => [r.fireTime.getTime() - T0, r.identity, r.outcome])).toEqual([
      [1000, 'b', 'ok'],
      [0, 'a', 'cancelled'],
    ]);
  });

  it('runs one fire time that came during a run after it (overlap: buffer-one), and skips the ones after that', async () => {
    const clock = new ManualClock(T0 + 100);
    const [a, b] = [await replica('a', clock), await replica('b', clock)];
    gate = closedGate();
    const inside = whenEntered();
    const first = a.get(Reports).digest();
    await inside;
    await clock.advance(1000);
    expect(await b.get(Reports).digest()).toBeUndefined(); // kept for after the run going on
    await clock.advance(1000);
    expect(await a.get(Reports).digest()).toBeUndefined(); // one is kept already: skipped
    const buffered = firstValueFrom(
      merge(...[a, b].map((app) => app.get(EtcdLockEvents).events$)).pipe(
        filter((e): e is JobRunEvent => e.type === EtcdLockEventName.JobRunEnded && e.run.fireTime.getTime() === T0 + 1000),
      ),
    );
    gate.open();
    expect(await first).toBe('digested');
    expect((await buffered).run).toMatchObject({ kind: 'scheduled', outcome: 'ok', attempt: 1 });
    expect(runs.map((r) => r.fireTime - T0)).toEqual([0, 1000]);
    const history = await b.get(ScheduledJobsService).history('digest');
    expect(history.map((r) => [r.fireTime.getTime() - T0, r.outcome])).toEqual([
      [2000, 'skipped'],
      [1000, 'ok'],
      [0, 'ok'],
    ]);
    expect(await etcd.client.get('job/digest/buffered').exists()).toBe(false);
  });

  it('rejects an unknown job, a job without a schedule, and bad options with typed errors', async () => {
    const app = await replica('a', new ManualClock(T0));
    await expect(app.get(ScheduledJobsService).pause('nope')).rejects.toBeInstanceOf(UnknownJobError);
    expect(() => ScheduledJob('x', { history: 0 })).toThrow(InvalidArgumentError);
    expect(() => ScheduledJob('x', { catchUpWindowMs: -1 })).toThrow(InvalidArgumentError);
    expect(() => ScheduledJob('x', { overlap: 'queue' as never })).toThrow(InvalidArgumentError);
    expect(() => ScheduledJob('a/b')).toThrow(InvalidArgumentError);
    @Injectable()
    class Unscheduled {
      @ScheduledJob('lonely')
      async lonely() {}
    }
    await expect(etcd.app({}, [], [Unscheduled])).rejects.toThrow(/has no schedule: add @Cron\(expression\) or @Interval\(ms\)/);
  });
});

async function closeAndForgetApps() {
  await Promise.all(apps.splice(0).map((app) => app.close()));
}

async function untilRuns(count: number) {
  while (runs.length < count) await whenEntered();
}
