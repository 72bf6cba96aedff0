import type { IKeyValue } from 'etcd3';
import type { Logger } from '@nestjs/common';
import type { Clock } from '../clock/clock.js';
import { EtcdUnavailableError } from '../errors.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { jobKeys, prefixRangeEnd } from '../etcd/keys.js';
import { createdAt, lastKeysFirst } from '../etcd/requests.js';
import { EtcdLockEventName, type EtcdLockEvents } from '../events/etcd-lock.events.js';
import { HoldPath } from '../locks/hold-path.js';
import type { Lock } from '../locks/lock.interface.js';
import type { Contender } from '../queue/contender.js';
import { Backoff } from '../util/backoff.js';
import { messageOf } from '../util/error-message.js';
import { pause } from '../util/wait-signal.js';
import type { FireTimes } from './fire-times.js';
import {
  decodeRecord,
  type JobRunKind,
  lastAttempt,
  type ReadRecord,
  runsOf,
  type StoredAttempt,
  type StoredRecord,
} from './job-record.js';
import {
  bufferRequest,
  claimGuard,
  dropBufferedRequest,
  finishOps,
  JobKeys,
  newestRecords,
  type RecordExpectation,
  type Refusal,
  recordIfAbsent,
  refusalOf,
  replaceRecord,
} from './job-requests.js';
import { type RunInfo, runContext } from './run-context.js';
import { JobWatch } from './job-watch.js';
import { fireTimesToCatchUp } from './catch-up.js';
import type { ResolvedJobOptions } from './scheduled-job.options.js';

/** What every job of an app shares. */
export interface JobDeps {
  readonly path: HoldPath;
  readonly rpc: EtcdPort;
  readonly clock: Clock;
  readonly prefix: string;
  readonly identity: string;
  readonly events: EtcdLockEvents;
  readonly logger: Logger;
}

/** A job as the explorer found it. */
export interface JobDeclaration {
  readonly name: string;
  readonly label: string;
  readonly fireTimes: FireTimes;
  readonly options: ResolvedJobOptions;
  /** Runs the method (for the runs the library starts: catch-up, retries, manual triggers). */
  readonly invoke: () => unknown;
}

/**
 * One scheduled job in one app: claims its fire times (a tick, a catch-up, a retry, a manual trigger) and runs them
 * as holds, records each run, and watches the job's keys for runs abandoned by a dead replica and for triggers.
 */
export class JobRuntime {
  readonly keys: JobKeys;
  /** Fire times being claimed or run here: a second tick of one fire time in this process skips at once. */
  private readonly inFlight = new Set<number>();
  /** Runs going on here, so shutdown can wait for them. */
  readonly running = new Set<Promise<unknown>>();
  /** The job's keys, watched: abandoned runs, triggers, and each run's end. */
  private readonly watch: JobWatch;
  private stopped = false;

  constructor(
    readonly decl: JobDeclaration,
    private readonly deps: JobDeps,
  ) {
    this.keys = new JobKeys(deps.prefix, decl.name);
    this.watch = new JobWatch(deps.rpc, this.keys, {
      abandoned: (record) => void this.recover(record),
      triggered: (kv) => this.onTrigger(kv),
      buffered: (kv) => this.onBuffered(kv),
    });
  }

  /**
   * A tick: claims the fire time at or before now and runs `fn` if this replica claimed it. A fire time whose
   * record this replica's watch has seen is skipped with no request: it ran, runs or was skipped elsewhere, and
   * its claim would be refused. In a fleet whose timers tick at different phases, only the replicas that tick
   * before the winner's record reaches them send a claim, not all of them.
   */
  tick<T>(fn: () => T | Promise<T>): Promise<T | undefined> {
    const fireTime = this.decl.fireTimes.atOrBefore(this.deps.clock.now());
    if (this.watch.hasRecord(fireTime)) return Promise.resolve(undefined);
    return this.track(this.attempt(fireTime, 'scheduled', { absent: true }, [], fn)).then(async (claim) => {
      if (claim.ran) return claim.value;
      if (claim.why === 'overlap') await this.overlapped(fireTime);
      return undefined;
    });
  }

  /**
   * A tick refused because a run goes on: by the overlap policy, the fire time is kept to run after it
   * (`buffer-one`, if no other is kept) or recorded as skipped. Never rejects: the tick's caller is a timer.
   */
  private async overlapped(fireTime: number): Promise<void> {
    const { rpc } = this.deps;
    try {
      if (this.decl.options.overlap === 'buffer-one') {
        const kept = await rpc.txn(bufferRequest(this.keys, fireTime), `keep a fire time of '${this.decl.name}'`);
        if (kept.succeeded) return;
      }
      const skipped: StoredRecord = { fireTime, attempts: [{ kind: 'scheduled', outcome: 'skipped', start: this.deps.clock.now() }] };
      await rpc.txn(recordIfAbsent(this.keys, skipped), `record a skipped run of '${this.decl.name}'`);
    } catch (err) {
      this.logFailure(fireTime, err);
    }
  }

  /** Starts watching the job's keys (abandoned runs, triggers) and writes its schedule for the CLI. */
  async start(): Promise<void> {
    const spec = Buffer.from(JSON.stringify({ schedule: this.decl.fireTimes.spec, ...this.decl.options }));
    await this.deps.rpc.txn(
      { compare: [], success: [{ request_put: { key: this.keys.spec, value: spec } }] },
      `describe job '${this.decl.name}'`,
    );
    await this.watch.start();
  }

  /** Resolves when the next run of the job ends anywhere (its hold deleted), as the watch sees it. */
  nextRunEnd(): Promise<void> {
    return this.watch.nextRelease();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.watch.close();
  }

  /**
   * The fire times missed since the newest record (or since the job was resumed), within the catch-up window and
   * by the catch-up policy: read when a session begins (at start-up, and after etcd was unreachable).
   */
  async missed(): Promise<number[]> {
    if (this.decl.options.catchUp === 'none') return [];
    const res = await this.deps.rpc.txn(
      {
        compare: [],
        success: [
          { request_range: newestRecords(this.keys, 1, true) },
          { request_range: lastKeysFirst(this.keys.floors, { limit: 1, keys_only: true }) },
        ],
      },
      `read the newest run of job '${this.decl.name}'`,
    );
    const [records, floors] = res.responses.map((r) => r.response_range.kvs);
    const since = Math.max(
      records[0] ? this.keys.timeIn(this.keys.runs, records[0].key) : Number.NEGATIVE_INFINITY,
      floors[0] ? this.keys.timeIn(this.keys.floors, floors[0].key) : Number.NEGATIVE_INFINITY,
    );
    // A job never run has nothing to catch up (since is -Infinity): its first fire time is the next one.
    const now = this.deps.clock.now();
    return fireTimesToCatchUp(this.decl.fireTimes, this.decl.options, { since, until: now, atUntil: true, now });
  }

  /** Runs missed fire times in order (each claimed once across the fleet); stops if the job is paused. */
  async catchUp(fireTimes: readonly number[]): Promise<void> {
    for (const fireTime of fireTimes) {
      if ((await this.claimWhenFree(fireTime, 'caught-up', { absent: true }, [])) === 'paused') return;
    }
  }

  /**
   * A run the library starts (catch-up, retry, manual): claimed as soon as no other run goes on, so that with
   * overlap `skip` a missed fire time waits for the run before it instead of being lost. Never rejects.
   */
  private async claimWhenFree(
    fireTime: number,
    kind: JobRunKind,
    expect: RecordExpectation,
    earlier: readonly StoredAttempt[],
    trigger?: { key: Buffer; createRevision: bigint },
  ): Promise<Exclude<Refusal, 'overlap'> | 'ran'> {
    while (!this.stopped) {
      // Listen before the claim: the run that refuses it ends after the claim's read, so its end is heard.
      const released = this.watch.nextRelease();
      try {
        const claim = await this.track(this.attempt(fireTime, kind, expect, earlier, this.decl.invoke, trigger));
        if (claim.ran) return 'ran';
        if (claim.why !== 'overlap') return claim.why;
      } catch (err) {
        this.logFailure(fireTime, err);
        return 'done';
      }
      await released;
    }
    return 'done';
  }

  /**
   * One attempt at a fire time: claim it (the hold and the record in one request), run, record the outcome.
   * Resolves with the method's result, or undefined when another replica (or this one) has the fire time.
   */
  private async attempt<T>(
    fireTime: number,
    kind: JobRunKind,
    expect: RecordExpectation,
    earlier: readonly StoredAttempt[],
    fn: () => T | Promise<T>,
    trigger?: { key: Buffer; createRevision: bigint },
  ): Promise<Claim<T>> {
    if (this.inFlight.has(fireTime)) return { ran: false, why: 'done' };
    this.inFlight.add(fireTime);
    try {
      const { clock, identity, path } = this.deps;
      const started: StoredAttempt = { kind, identity, start: clock.now(), outcome: 'running' };
      const record: StoredRecord = { fireTime, attempts: [...earlier, started] };
      const { overlap } = this.decl.options;
      if (overlap === 'cancel-previous') await this.cancelOthers(fireTime);
      let contender: Contender | undefined;
      const lock = await path.tryAcquire(
        this.decl.name,
        'claim_run',
        () => {
          contender = path.contender(jobKeys.holdName(this.decl.name, fireTime), identity, {
            joinGuard: () => claimGuard(this.keys, fireTime, expect, record, overlap !== 'allow', trigger),
          });
          return HoldPath.alone(contender);
        },
        false,
      );
      if (!lock || !contender) return { ran: false, why: contender?.lastRefusal ? refusalOf(contender.lastRefusal) : 'done' };
      const info: RunInfo = { job: this.decl.name, fireTime: new Date(fireTime), kind, attempt: record.attempts.length };
      this.emit(EtcdLockEventName.JobRunStarted, { ...record, modRevision: lock.fencingToken });
      let outcome: 'ok' | 'failed' = 'ok';
      let failure: unknown;
      let result: T | undefined;
      try {
        result = await path.run(lock, () => runContext.run(info, fn));
      } catch (err) {
        outcome = 'failed';
        failure = err;
      }
      const ended: StoredAttempt = {
        ...started,
        end: clock.now(),
        outcome,
        token: lock.fencingToken.toString(),
        ...(failure === undefined ? {} : { error: messageOf(failure) }),
      };
      const final: StoredRecord = { fireTime, attempts: [...earlier, ended] };
      const missing = this.gaps(await this.finish(contender, lock, final), fireTime);
      if (missing.length > 0) void this.catchUp(missing);
      if (failure !== undefined) throw failure;
      return { ran: true, value: result as T };
    } finally {
      this.inFlight.delete(fireTime);
    }
  }

  /**
   * Writes the run's record, fenced by its hold (a run whose replica was cut off writes nothing: the others find it
   * abandoned), with the retention cut in the same request; then lets the hold go. A write etcd does not answer is
   * tried again while the hold lasts.
   */
  private async finish(contender: Contender, lock: Lock, record: StoredRecord): Promise<number[]> {
    const backoff = new Backoff(100, 2000);
    try {
      while (lock.isHeld) {
        try {
          const newest = await this.deps.rpc.range(newestRecords(this.keys, this.decl.options.history + 1, true), 'read the newest runs');
          const recorded = newest.kvs.map((kv) => this.keys.timeIn(this.keys.runs, kv.key));
          const cutoff = recorded.length > this.decl.options.history ? recorded[recorded.length - 1] : undefined;
          const outcome = await contender.commitFenced([], finishOps(this.keys, record, cutoff), []);
          if ('lost' in outcome) break;
          this.emit(EtcdLockEventName.JobRunEnded, { ...record, modRevision: lock.fencingToken });
          return recorded;
        } catch (err) {
          if (!(err instanceof EtcdUnavailableError)) throw err;
          await pause(backoff.next());
        }
      }
      this.deps.logger.warn(
        `Job '${this.decl.name}' run of ${new Date(record.fireTime).toISOString()} ended after its hold was lost: the other replicas record it as abandoned`,
      );
      return [];
    } finally {
      await lock.release();
    }
  }

  /**
   * Fire times with no record between the newest records (read by a run's end anyway), within the catch-up window:
   * ticks every replica missed while the fleet kept running (etcd unreachable for a moment, a tick delayed past
   * the next). Caught up at no extra request; only between records, so a new job does not run its past.
   */
  private gaps(recorded: readonly number[], before: number): number[] {
    if (recorded.length < 2) return [];
    const range = { since: Math.min(...recorded), until: before, atUntil: false, now: this.deps.clock.now(), have: new Set(recorded) };
    return fireTimesToCatchUp(this.decl.fireTimes, this.decl.options, range);
  }

  /** Overlap `cancel-previous`: ends every other run of the job, recording each as cancelled. */
  private async cancelOthers(fireTime: number): Promise<void> {
    const res = await this.deps.rpc.range(
      { key: this.keys.holds, range_end: prefixRangeEnd(this.keys.holds), keys_only: true },
      'read the runs going on',
    );
    for (const hold of res.kvs) {
      const other = this.keys.timeIn(this.keys.holds, hold.key);
      if (other === fireTime) continue;
      const read = await this.deps.rpc.range({ key: this.keys.run(other) }, 'read a run going on');
      const record = read.kvs[0] && decodeRecord(read.kvs[0]);
      if (!record || lastAttempt(record).outcome !== 'running') continue;
      const cancelled = withLast(record, { outcome: 'cancelled', end: this.deps.clock.now() });
      const cas = replaceRecord(this.keys, cancelled, record.modRevision);
      await this.deps.rpc.txn(
        {
          compare: [...(cas.compare ?? []), createdAt(hold.key, hold.create_revision)],
          success: [...(cas.success ?? []), { request_delete_range: { key: hold.key } }],
        },
        `cancel the run of ${new Date(other).toISOString()}`,
      );
    }
  }

  /** A run whose replica died: run the fire time again elsewhere (`retries`), or record it abandoned. */
  private async recover(record: ReadRecord): Promise<void> {
    // A running attempt's token is its record's mod revision (written with its hold): kept with the verdict.
    const abandoned = withLast(record, { outcome: 'abandoned', token: lastAttempt(record).token ?? record.modRevision.toString() });
    try {
      if (record.attempts.length <= this.decl.options.retries) {
        await this.claimWhenFree(record.fireTime, 'retried', { modRevision: record.modRevision }, abandoned.attempts);
        return;
      }
      const res = await this.deps.rpc.txn(
        replaceRecord(this.keys, abandoned, record.modRevision),
        `record an abandoned run of '${this.decl.name}'`,
      );
      if (res.succeeded) this.emit(EtcdLockEventName.JobRunEnded, { ...abandoned, modRevision: record.modRevision });
    } catch (err) {
      this.logFailure(record.fireTime, err);
    }
  }

  /** A manual run asked for (CLI or service): one replica claims it, deleting the request in the same write. */
  private onTrigger(kv: IKeyValue): void {
    const at = this.keys.timeIn(this.keys.triggers, kv.key);
    const trigger = { key: kv.key, createRevision: BigInt(kv.create_revision) };
    void this.claimWhenFree(at, 'manual', { absent: true }, [], trigger);
  }

  /**
   * A fire time kept for after the run going on (overlap `buffer-one`): claimed once that run ends, deleting the
   * kept copy in the same write; dropped if the fire time was run meanwhile or the job was paused.
   */
  private onBuffered(kv: IKeyValue): void {
    const fireTime = Number(kv.value.toString());
    const createRevision = BigInt(kv.create_revision);
    void this.claimWhenFree(fireTime, 'scheduled', { absent: true }, [], { key: kv.key, createRevision }).then(async (end) => {
      if (end === 'ran' || this.stopped) return;
      const drop = dropBufferedRequest(this.keys, fireTime, createRevision, end);
      await this.deps.rpc.txn(drop, `drop a kept fire time of '${this.decl.name}'`).catch((err) => this.logFailure(fireTime, err));
    });
  }

  private emit(type: typeof EtcdLockEventName.JobRunStarted | typeof EtcdLockEventName.JobRunEnded, record: ReadRecord): void {
    const run = runsOf(this.decl.name, record)[0];
    this.deps.events.emit({ type, run });
  }

  private logFailure(fireTime: number, err: unknown): void {
    this.deps.logger.error(`Job '${this.decl.name}' run of ${new Date(fireTime).toISOString()} failed: ${messageOf(err)}`);
  }

  private track<T>(run: Promise<T>): Promise<T> {
    this.running.add(run);
    const forget = () => this.running.delete(run);
    run.then(forget, forget);
    return run;
  }
}

/** A claim's result: the run's value, or why another replica (or this one) has the fire time. */
type Claim<T> = { readonly ran: true; readonly value: T } | { readonly ran: false; readonly why: Refusal };

/** The record with its last attempt changed. */
function withLast(record: StoredRecord, change: Partial<StoredAttempt>): StoredRecord {
  const attempts = [...record.attempts];
  attempts[attempts.length - 1] = { ...attempts[attempts.length - 1], ...change };
  return { fireTime: record.fireTime, attempts };
}
