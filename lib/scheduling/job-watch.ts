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

/** How many of the newest fire times with a record the watch remembers (a tick names the latest fire time). */
const RECORDED_KEPT = 16;

/**
 * The watch of one job's keys, on every replica that declares the job (and only those: a replica is told nothing
 * of jobs it does not have). It keeps the records whose last attempt is running; a run's own end writes its record
 * before its hold goes, so a hold deleted under a record still running was abandoned. It reads the keys first
 * (and again after etcd cancels the watch), so runs abandoned, triggers and kept fire times put while nobody watched are found too.
 * It also remembers which of the newest fire times have a record: a tick of one of them skips with no request.
 */
export class JobWatch {
  private readonly running = new Map<number, ReadRecord>();
  /** Fire times whose record exists, as of the last event seen (the newest `RECORDED_KEPT`, in the order seen). */
  private readonly recorded = new Set<number>();
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

  /**
   * Whether the fire time has a record, as of the last event seen: it ran, runs or was skipped somewhere, and a
   * claim of it would be refused. False when not known (never seen, or forgotten): then only etcd can tell.
   */
  hasRecord(fireTime: number): boolean {
    return this.recorded.has(fireTime);
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
    this.recorded.clear();
    for (const kv of res.kvs) {
      if (startsWith(kv.key, keys.holds)) holds.add(keys.timeIn(keys.holds, kv.key));
      else if (startsWith(kv.key, keys.runs)) {
        this.remember(keys.timeIn(keys.runs, kv.key));
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

  private remember(fireTime: number): void {
    this.recorded.delete(fireTime);
    this.recorded.add(fireTime);
    // Sets iterate in insertion order: the first is the one seen longest ago.
    if (this.recorded.size > RECORDED_KEPT) this.recorded.delete(this.recorded.values().next().value as number);
  }

  private onEvent(type: 'put' | 'delete', kv: IKeyValue): void {
    const { keys } = this;
    if (startsWith(kv.key, keys.runs)) {
      const fireTime = keys.timeIn(keys.runs, kv.key);
      if (type === 'delete') {
        this.recorded.delete(fireTime);
        return;
      }
      this.remember(fireTime);
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
