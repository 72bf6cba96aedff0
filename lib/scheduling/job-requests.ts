import type { ICompare, IRangeRequest, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import { fireSegment, jobKeys, prefixRangeEnd } from '../etcd/keys.js';
import { createdAt, exists, lastKeysFirst, modifiedAt, nothingBetween, nothingUnder } from '../etcd/requests.js';
import { encodeRecord, type StoredRecord } from './job-record.js';

/** A job's keys under one prefix (see `jobKeys`). */
export class JobKeys {
  constructor(
    private readonly prefix: string,
    readonly job: string,
  ) {}

  run(fireTime: number): Buffer {
    return Buffer.from(jobKeys.run(this.prefix, this.job, fireTime));
  }
  get runs(): Buffer {
    return Buffer.from(jobKeys.runs(this.prefix, this.job));
  }
  get holds(): Buffer {
    return Buffer.from(jobKeys.holds(this.prefix, this.job));
  }
  get paused(): Buffer {
    return Buffer.from(jobKeys.paused(this.prefix, this.job));
  }
  get floors(): Buffer {
    return Buffer.from(jobKeys.floors(this.prefix, this.job));
  }
  get spec(): Buffer {
    return Buffer.from(jobKeys.spec(this.prefix, this.job));
  }
  get triggers(): Buffer {
    return Buffer.from(jobKeys.triggers(this.prefix, this.job));
  }
  trigger(at: number): Buffer {
    return Buffer.from(jobKeys.trigger(this.prefix, this.job, at));
  }
  get buffered(): Buffer {
    return Buffer.from(jobKeys.buffered(this.prefix, this.job));
  }
  /**
   * The time a key under `root` names (`run/<fire time>`, `hold/<fire time>/<lease>`, `floor/<fire time>`,
   * `trigger/<at>`): its first segment after the root.
   */
  timeIn(root: Buffer, key: Buffer): number {
    return Number(key.subarray(root.length).toString().split('/')[0]);
  }
  /** Everything of the job: what its replicas watch. */
  get all(): Buffer {
    return Buffer.from(jobKeys.prefix(this.prefix, this.job));
  }
}

/** What a claim expects of the fire time's record: none yet, or the one read (a retry after an abandoned run). */
export type RecordExpectation = { readonly absent: true } | { readonly modRevision: bigint };

/**
 * The guard of a claim (see `QueueContext.joinGuard`): the job is not paused, the fire time is above the floor
 * retention left, its record is as expected, and (unless overlapping runs are allowed) no other run goes on. It
 * writes the record, and deletes the trigger key a manual run answers. Its failure reads the record and the pause.
 */
export function claimGuard(
  keys: JobKeys,
  fireTime: number,
  expect: RecordExpectation,
  record: StoredRecord,
  exclusive: boolean,
  trigger?: { key: Buffer; createRevision: bigint },
): { compares: ICompare[]; success: IRequestOp[]; failure: IRequestOp[] } {
  const run = keys.run(fireTime);
  const compares = [
    createdAt(keys.paused, 0n),
    nothingBetween(Buffer.concat([keys.floors, Buffer.from(fireSegment(fireTime))]), prefixRangeEnd(keys.floors)),
    'absent' in expect ? createdAt(run, 0n) : modifiedAt(run, expect.modRevision),
  ];
  if (exclusive) compares.push(nothingUnder(keys.holds));
  if (trigger) compares.push(createdAt(trigger.key, trigger.createRevision));
  const success: IRequestOp[] = [{ request_put: { key: run, value: Buffer.from(encodeRecord(record)) } }];
  if (trigger) success.push({ request_delete_range: { key: trigger.key } });
  const floor = Buffer.concat([keys.floors, Buffer.from(fireSegment(fireTime))]);
  return {
    compares,
    success,
    failure: [
      { request_range: { key: run } },
      { request_range: { key: keys.paused, count_only: true } },
      { request_range: { key: floor, range_end: prefixRangeEnd(keys.floors), count_only: true } },
    ],
  };
}

/** Why a claim was refused: the fire time is `done` (recorded, running, or below the floor), `paused`, or an `overlap`. */
export type Refusal = 'done' | 'paused' | 'overlap';

/** Reads a refused claim's answer (`claimGuard`'s failure reads, then the join's read of the fire time's holds). */
export function refusalOf(res: ITxnResponse): Refusal {
  const [record, paused, floor, holds] = res.responses.map((r) => r.response_range);
  if (Number(paused.count) > 0) return 'paused';
  if (record.kvs.length > 0 || Number(floor.count) > 0 || holds.kvs.length > 0) return 'done';
  return 'overlap';
}

/**
 * Writes a record only if the fire time has none and is above the floor: a fire time skipped because a run went on
 * is recorded as such, once, so catch-up never runs it later.
 */
export function recordIfAbsent(keys: JobKeys, record: StoredRecord): ITxnRequest {
  const run = keys.run(record.fireTime);
  return {
    compare: [
      createdAt(run, 0n),
      nothingBetween(Buffer.concat([keys.floors, Buffer.from(fireSegment(record.fireTime))]), prefixRangeEnd(keys.floors)),
    ],
    success: [{ request_put: { key: run, value: Buffer.from(encodeRecord(record)) } }],
  };
}

/** Rewrites a record only if nobody wrote it since `modRevision` (a compare-and-swap). */
export function replaceRecord(keys: JobKeys, record: StoredRecord, modRevision: bigint): ITxnRequest {
  const run = keys.run(record.fireTime);
  return { compare: [modifiedAt(run, modRevision)], success: [{ request_put: { key: run, value: Buffer.from(encodeRecord(record)) } }] };
}

/** The newest `count` records' keys, newest first (the retention cut, the catch-up's start). */
export function newestRecords(keys: JobKeys, count: number, keysOnly: boolean): IRangeRequest {
  return lastKeysFirst(keys.runs, { limit: count, keys_only: keysOnly });
}

/**
 * The final write of a run (fenced by its hold): its record, and the retention cut in the same request: records
 * at or before `cutoff` are deleted and the floor moves up to it, so etcd keeps `history` records per job.
 */
export function finishOps(keys: JobKeys, record: StoredRecord, cutoff: number | undefined): IRequestOp[] {
  const ops: IRequestOp[] = [{ request_put: { key: keys.run(record.fireTime), value: Buffer.from(encodeRecord(record)) } }];
  if (cutoff === undefined) return ops;
  const floor = Buffer.concat([keys.floors, Buffer.from(fireSegment(cutoff))]);
  ops.push(
    { request_delete_range: { key: keys.runs, range_end: keys.run(cutoff + 1) } },
    { request_delete_range: { key: keys.floors, range_end: floor } },
    { request_put: { key: floor, value: Buffer.alloc(0) } },
  );
  return ops;
}

/**
 * Resumes a paused job: deletes the pause and moves the floor up to `fireTime` (the latest one passed), in one
 * request, so the fire times passed while it was paused are never caught up. Does nothing if it is not paused.
 */
export function resumeRequest(keys: JobKeys, fireTime: number): ITxnRequest {
  const floor = Buffer.concat([keys.floors, Buffer.from(fireSegment(fireTime))]);
  return {
    compare: [exists(keys.paused)],
    success: [{ request_delete_range: { key: keys.paused } }, { request_put: { key: floor, value: Buffer.alloc(0) } }],
  };
}

/** Pauses a job: the claims of its fire times fail while this key exists. */
export function pauseRequest(keys: JobKeys, by: string, at: number): ITxnRequest {
  return { compare: [], success: [{ request_put: { key: keys.paused, value: Buffer.from(JSON.stringify({ by, at })) } }] };
}

/**
 * Overlap `buffer-one`: keeps `fireTime` to run when the run going on ends, unless a fire time is already kept
 * (the policy keeps one; the later ones are skipped). Not bound to a lease: any replica of the job claims it.
 */
export function bufferRequest(keys: JobKeys, fireTime: number): ITxnRequest {
  return {
    compare: [createdAt(keys.buffered, 0n)],
    success: [{ request_put: { key: keys.buffered, value: Buffer.from(String(fireTime)) } }],
  };
}

/**
 * Drops a kept fire time whose claim was refused for good: it was run or recorded (`done`), or the job is paused.
 * Only the copy that was read (`createRevision`), and only while the reason holds.
 */
export function dropBufferedRequest(keys: JobKeys, fireTime: number, createRevision: bigint, why: 'done' | 'paused'): ITxnRequest {
  return {
    compare: [createdAt(keys.buffered, createRevision), exists(why === 'paused' ? keys.paused : keys.run(fireTime))],
    success: [{ request_delete_range: { key: keys.buffered } }],
  };
}

/** Asks for a manual run at `at`: the first replica of the job to see it claims it. */
export function triggerRequest(keys: JobKeys, by: string, at: number): ITxnRequest {
  return { compare: [], success: [{ request_put: { key: keys.trigger(at), value: Buffer.from(by) } }] };
}
