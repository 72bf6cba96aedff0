import type { Clock } from '../clock/clock.js';
import { UnknownJobError } from '../errors.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { jobKeys, prefixRangeEnd } from '../etcd/keys.js';
import { InvalidArgumentError } from '../errors.js';
import { assertName } from '../util/validation.js';
import { cronFireTimes, type FireTimes, intervalFireTimes, type ScheduleSpec } from './fire-times.js';
import { decodeRecord, type JobRun, runsOf } from './job-record.js';
import { JobKeys, newestRecords, pauseRequest, resumeRequest, triggerRequest } from './job-requests.js';
import { jobStatus, type JobStatus } from './job-status.js';

/**
 * The fleet-wide controls of scheduled jobs, as requests to etcd: what `ScheduledJobsService` and the CLI's `jobs`
 * commands both do. A job is known by the schedule its replicas write at start-up (`job/<name>/spec`).
 */
export class JobControls {
  constructor(
    private readonly rpc: EtcdPort,
    private readonly prefix: string,
    /** Who asks (an instance identity, or the CLI's user), kept with a pause and a trigger. */
    private readonly by: string,
    private readonly clock: Clock,
  ) {}

  keys(name: string): JobKeys {
    return new JobKeys(this.prefix, name);
  }

  /** The jobs any replica declared, by name. */
  async names(): Promise<string[]> {
    const root = Buffer.from(jobKeys.root(this.prefix));
    const res = await this.rpc.range({ key: root, range_end: prefixRangeEnd(root), keys_only: true }, 'list the scheduled jobs');
    const names = new Set<string>();
    for (const kv of res.kvs) {
      const rest = kv.key.subarray(root.length).toString();
      if (rest.endsWith('/spec') && rest.indexOf('/') === rest.length - '/spec'.length) names.add(rest.slice(0, -'/spec'.length));
    }
    return [...names].sort();
  }

  /** The schedule a job's replicas wrote, as fire times; `UnknownJobError` if none did. */
  async fireTimes(name: string): Promise<FireTimes> {
    assertName(name, 'name');
    const res = await this.rpc.range({ key: this.keys(name).spec }, `read job '${name}'`);
    if (!res.kvs[0]) throw new UnknownJobError(name);
    const { schedule } = JSON.parse(res.kvs[0].value.toString()) as { schedule: ScheduleSpec };
    return 'intervalMs' in schedule ? intervalFireTimes(schedule.intervalMs) : cronFireTimes(schedule);
  }

  status(name: string, fireTimes: FireTimes): Promise<JobStatus> {
    return jobStatus(this.rpc, this.keys(name), fireTimes, this.clock.now());
  }

  async pause(name: string): Promise<void> {
    await this.rpc.txn(pauseRequest(this.keys(name), this.by, this.clock.now()), `pause job '${name}'`);
  }

  /** Resumes a paused job; the fire times passed while it was paused are not caught up. */
  async resume(name: string, fireTimes: FireTimes): Promise<void> {
    await this.rpc.txn(resumeRequest(this.keys(name), fireTimes.atOrBefore(this.clock.now())), `resume job '${name}'`);
  }

  /** Asks for a run now (recorded as `manual`): one replica that has the job runs it, as soon as one is up. */
  async trigger(name: string): Promise<void> {
    await this.rpc.txn(triggerRequest(this.keys(name), this.by, this.clock.now()), `trigger job '${name}'`);
  }

  /** The recorded runs, newest fire time first (each fire time's attempts newest first). */
  async history(name: string, limit = 100): Promise<JobRun[]> {
    if (!Number.isInteger(limit) || limit < 1)
      throw new InvalidArgumentError('options.limit', `must be a whole number, at least 1, got ${String(limit)}`);
    const res = await this.rpc.range(newestRecords(this.keys(name), limit, false), `read the history of job '${name}'`);
    return res.kvs.flatMap((kv) => {
      const record = decodeRecord(kv);
      return record ? runsOf(name, record) : [];
    });
  }
}
