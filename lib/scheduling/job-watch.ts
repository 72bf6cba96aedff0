import type { IKeyValue } from 'etcd3';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { ResilientWatch } from '../etcd/resilient-watch.js';
import { decodeRecord, lastAttempt, type ReadRecord } from './job-record.js';
import type { JobKeys } from './job-requests.js';

/** What the watch of a job's keys tells the job's runtime. */
export interface JobWatchListener {
  /** A run's hold went while its record said running: its replica died or was cut off mid-run. */
  abandoned(record: ReadRecord): void;
  /** A manual run was asked for (`trigger/<at>`). */
  triggered(kv: IKeyValue): void;
  /** A fire time was kept to run after the run going on (`buffered`, overlap `buffer-one`). */
  buffered(kv: IKeyValue): void;
}

/**
 * The watch of one job's keys, on every replica that declares the job (and only those: a replica is told nothing
 * of jobs it does not have). It keeps the records whose last attempt is running; a run's own end writes its record
 * before its hold goes, so a hold deleted under a record still running was abandoned. It reads the keys first
 * (and again after etcd cancels the watch), so runs abandoned, triggers and kept fire times put while nobody watched are found too.
 */
export class JobWatch {
  private readonly running = new Map<number, ReadRecord>();
  private releaseWaiters: Array<() => void> = [];
  private watch: ResilientWatch | undefined;

  constructor(
    private readonly rpc: EtcdPort,
    private readonly keys: JobKeys,
    private readonly listener: JobWatchListener,
  ) {}

  /** Reads the job's keys, then watches from the next revision: the app has seen what was pending once it starts. */
  async start(): Promise<void> {
    const revision = await this.read();
    this.watch = new ResilientWatch(
      this.rpc,
      { prefix: this.keys.all.toString() },
      { read: () => this.read(), onEvent: (type, kv) => this.onEvent(type, kv) },
    ).start(revision + 1n);
  }

  async close(): Promise<void> {
    for (const wake of this.releaseWaiters.splice(0)) wake();
    await this.watch?.close();
    this.watch = undefined;
  }

  /** Resolves when the next run of the job ends anywhere (its hold deleted), or the watch closes. */
  nextRelease(): Promise<void> {
    return new Promise((resolve) => this.releaseWaiters.push(resolve));
  }

  private async read(): Promise<bigint> {
    const { keys } = this;
    const res = await this.rpc.range({ key: keys.all, range_end: prefixRangeEnd(keys.all) }, `read job '${keys.job}'`);
    const holds = new Set<number>();
    const records: ReadRecord[] = [];
    for (const kv of res.kvs) {
      if (startsWith(kv.key, keys.holds)) holds.add(keys.timeIn(keys.holds, kv.key));
      else if (startsWith(kv.key, keys.runs)) {
        const record = decodeRecord(kv);
        if (record && lastAttempt(record).outcome === 'running') records.push(record);
      } else if (startsWith(kv.key, keys.triggers)) this.listener.triggered(kv);
      else if (kv.key.equals(keys.buffered)) this.listener.buffered(kv);
    }
    this.running.clear();
    for (const record of records) {
      if (holds.has(record.fireTime)) this.running.set(record.fireTime, record);
      else this.listener.abandoned(record);
    }
    return BigInt(res.header.revision);
  }

  private onEvent(type: 'put' | 'delete', kv: IKeyValue): void {
    const { keys } = this;
    if (type === 'put' && startsWith(kv.key, keys.runs)) {
      const record = decodeRecord(kv);
      if (record && lastAttempt(record).outcome === 'running') this.running.set(record.fireTime, record);
      else if (record) this.running.delete(record.fireTime);
    } else if (type === 'delete' && startsWith(kv.key, keys.holds)) {
      for (const wake of this.releaseWaiters.splice(0)) wake();
      const fireTime = keys.timeIn(keys.holds, kv.key);
      const record = this.running.get(fireTime);
      if (!record) return;
      this.running.delete(fireTime);
      this.listener.abandoned(record);
    } else if (type === 'put' && startsWith(kv.key, keys.triggers)) {
      this.listener.triggered(kv);
    } else if (type === 'put' && kv.key.equals(keys.buffered)) {
      this.listener.buffered(kv);
    }
  }
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length > prefix.length && key.subarray(0, prefix.length).equals(prefix);
}
