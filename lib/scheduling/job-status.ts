import type { EtcdPort } from '../etcd/etcd-port.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import type { FireTimes } from './fire-times.js';
import { decodeRecord, type JobRun, runsOf } from './job-record.js';
import { type JobKeys, newestRecords } from './job-requests.js';

/** A job as `ScheduledJobsService.list()` and the CLI's `jobs list` show it. */
export interface JobStatus {
  /** The job's name. */
  readonly name: string;
  /** The schedule: a cron expression, or `every <n> ms`. */
  readonly schedule: string;
  /** The next fire time after now. */
  readonly nextFireTime: Date;
  /** Paused across the fleet (`pause`): its fire times are not run. */
  readonly paused: boolean;
  /** Whether a run of it goes on now, somewhere. */
  readonly running: boolean;
  /** The last attempt at the newest recorded fire time, if any. */
  readonly lastRun: JobRun | undefined;
}

/** Reads a job's state in one request. */
export async function jobStatus(rpc: EtcdPort, keys: JobKeys, fireTimes: FireTimes, now: number): Promise<JobStatus> {
  const res = await rpc.txn(
    {
      compare: [],
      success: [
        { request_range: { key: keys.paused, count_only: true } },
        { request_range: { key: keys.holds, range_end: prefixRangeEnd(keys.holds), count_only: true } },
        { request_range: newestRecords(keys, 1, false) },
      ],
    },
    `read job '${keys.job}'`,
  );
  const [paused, holds, newest] = res.responses.map((r) => r.response_range);
  const record = newest.kvs[0] && decodeRecord(newest.kvs[0]);
  return {
    name: keys.job,
    schedule: fireTimes.description,
    nextFireTime: new Date(fireTimes.after(now)),
    paused: Number(paused.count) > 0,
    running: Number(holds.count) > 0,
    lastRun: record ? runsOf(keys.job, record)[0] : undefined,
  };
}
