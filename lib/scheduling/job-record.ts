import type { IKeyValue } from 'etcd3';

/** How a run came about. */
export type JobRunKind = 'scheduled' | 'caught-up' | 'retried' | 'manual';

/**
 * How a run ended: `running` until it does; `abandoned` when its replica died or was cut off mid-run (its lease
 * ended first); `skipped` when the fire time came while an earlier run still went on (overlap policy `skip`);
 * `cancelled` when a later fire time cancelled it (overlap policy `cancel-previous`).
 */
export type JobRunOutcome = 'running' | 'ok' | 'failed' | 'abandoned' | 'skipped' | 'cancelled';

/** One attempt at one fire time of a scheduled job, as the history shows it. */
export interface JobRun {
  /** The job's name. */
  readonly job: string;
  /** The tick it ran for, as the schedule names it (the same on every replica, whatever its clock). */
  readonly fireTime: Date;
  /** How the run came about: on its schedule, caught up, retried after its replica died, or asked for. */
  readonly kind: JobRunKind;
  /** 1 for the first attempt at this fire time, 2 for its first retry, … */
  readonly attempt: number;
  /** The identity of the replica that ran it (none for a skipped fire time). */
  readonly identity: string | undefined;
  /** When it started, by that replica's clock. */
  readonly startedAt: Date | undefined;
  /** When it ended, by that replica's clock (none while running, or for an abandoned run). */
  readonly endedAt: Date | undefined;
  /** How it ended, or `running`. */
  readonly outcome: JobRunOutcome;
  /** The error's message, for `failed`. */
  readonly error: string | undefined;
  /** The run's fencing token (the create revision of its hold). */
  readonly fencingToken: bigint | undefined;
}

/** An attempt as stored (short keys: a record is kept per fire time, many per job). */
export interface StoredAttempt {
  readonly kind: JobRunKind;
  readonly identity?: string;
  readonly start?: number;
  readonly end?: number;
  readonly outcome: JobRunOutcome;
  readonly error?: string;
  /** The fencing token, once known to the writer (a running attempt's is its record's mod revision). */
  readonly token?: string;
}

/** The record of one fire time: its attempts, oldest first. */
export interface StoredRecord {
  readonly fireTime: number;
  readonly attempts: readonly StoredAttempt[];
}

/** A record read from etcd, with the revision it was last written at (its compare-and-swap handle). */
export interface ReadRecord extends StoredRecord {
  readonly modRevision: bigint;
}

export function encodeRecord(record: StoredRecord): string {
  return JSON.stringify(record);
}

/** Decodes a record; undefined for a value that is not one (written by something else: ignored). */
export function decodeRecord(kv: Pick<IKeyValue, 'value' | 'mod_revision'>): ReadRecord | undefined {
  try {
    const parsed = JSON.parse(kv.value.toString()) as StoredRecord;
    if (typeof parsed.fireTime !== 'number' || !Array.isArray(parsed.attempts) || parsed.attempts.length === 0) return undefined;
    return { ...parsed, modRevision: BigInt(kv.mod_revision) };
  } catch {
    return undefined;
  }
}

/** The latest attempt of a record. */
export function lastAttempt(record: StoredRecord): StoredAttempt {
  return record.attempts[record.attempts.length - 1];
}

/** A record's attempts, as the history shows them (newest first). */
export function runsOf(job: string, record: ReadRecord): JobRun[] {
  return record.attempts
    .map((a, i): JobRun => {
      const running = a.outcome === 'running' && i === record.attempts.length - 1;
      const token = a.token ?? (running ? record.modRevision.toString() : undefined);
      return {
        job,
        fireTime: new Date(record.fireTime),
        kind: a.kind,
        attempt: i + 1,
        identity: a.identity,
        startedAt: a.start === undefined ? undefined : new Date(a.start),
        endedAt: a.end === undefined ? undefined : new Date(a.end),
        outcome: a.outcome,
        error: a.error,
        fencingToken: token === undefined ? undefined : BigInt(token),
      };
    })
    .reverse();
}
