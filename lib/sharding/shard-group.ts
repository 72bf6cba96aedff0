import type { Clock } from '../clock/clock.js';
import type { Logger } from '@nestjs/common';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import { ShardCountMismatchError, type ShardLossReason } from '../errors.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { EtcdLockEventName, type EtcdLockEvents } from '../events/etcd-lock.events.js';
import { namePrefix } from '../etcd/keys.js';
import { Contender } from '../queue/contender.js';
import type { DeleteWatch } from '../queue/delete-watch.js';
import type { LeaseSession } from '../session/lease-session.js';
import type { EtcdSessionService } from '../session/session.service.js';
import { Backoff } from '../util/backoff.js';
import { LogOnce } from '../util/log-once.js';
import { onAbort, sleep } from '../util/wait-signal.js';
import { type Assignment, rebalance, sameAssignment } from './assignment.js';
import { RecordWriter } from './record-writer.js';
import { GroupStore, withLeases } from './group-store.js';
import { ShardSlot } from './shard-slot.js';
import { ShardChangeLog } from './change-log.js';
import { messageOf } from '../util/error-message.js';
import { settled } from '../util/settle-once.js';
import { changeWatch, type ResilientWatch } from '../etcd/resilient-watch.js';

/** What a group needs from the instance around it. */
export interface ShardGroupContext {
  readonly rpc: EtcdPort;
  readonly sessions: EtcdSessionService;
  /** The deletion watches of shard keys. */
  readonly deletes: DeleteWatch;
  readonly prefix: string;
  readonly identity: string;
  readonly logger: Logger;
  readonly events: EtcdLockEvents;
  /** How long leaving waits for runs on a shard to end (the module's `shutdownTimeout`). */
  readonly drainMs: number;
  /** The module's clock. */
  readonly clock: Clock;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

/**
 * This instance's membership in one sharding group. It keeps a member key on the session lease, derives the next
 * assignment from the one in etcd whenever the members or the record change (a watch each, never polling), writes
 * it if it changed (compare-and-swap on the record), and takes or releases the shard locks it is assigned.
 */
export class ShardGroup {
  private readonly slots = new Map<number, ShardSlot>();
  private readonly owned = new BehaviorSubject<number[]>([]);
  private readonly stopped = new AbortController();
  private running: Promise<void> | undefined;
  private session: LeaseSession | undefined;
  private watches: ResilientWatch[] = [];
  private reconciling: Promise<void> | undefined;
  private again = false;
  /** Departed members' ids, with when this instance first saw them gone (for `rebalanceDelayMs`). */
  private readonly goneSince = new Map<string, number>();
  private retryTimer: NodeJS.Timeout | undefined;
  private reserveTimer: NodeJS.Timeout | undefined;
  private override: readonly number[] | undefined;
  private readonly retry = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  private readonly failure: LogOnce;
  private readonly changeLog: ShardChangeLog;
  private firstPass: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  mismatch: ShardCountMismatchError | undefined;

  private readonly store: GroupStore;
  private readonly writer = new RecordWriter(() => this.schedule());

  constructor(
    readonly name: string,
    readonly count: number,
    private readonly rebalanceDelayMs: number,
    private readonly ctx: ShardGroupContext,
  ) {
    this.failure = new LogOnce((message) => ctx.logger.warn(message));
    this.changeLog = new ShardChangeLog(name, count, (line) => ctx.logger.log(line));
    this.store = new GroupStore(ctx.rpc, ctx.prefix, name);
  }

  /** This instance's owned shards over time (ascending indexes). */
  changes(): Observable<number[]> {
    return this.owned.pipe(distinctUntilChanged((a, b) => a.length === b.length && a.every((x, i) => x === b[i])));
  }

  /** The shards owned now and not being handed over. */
  ownedSlots(): ShardSlot[] {
    return [...this.slots.values()].filter((slot) => slot.isOwned && !slot.isLeaving).sort((a, b) => a.index - b.index);
  }

  /** Starts; resolves after the first look at the assignment (rejects if the group's shard count differs). */
  start(): Promise<void> {
    const first = new Promise<void>((resolve, reject) => {
      this.firstPass = { resolve, reject };
    });
    this.running = this.run();
    return first;
  }

  /**
   * Leaves the group: deletes the member key first (the others reassign its shards at once), then gives each
   * shard up once the runs on it ended. The signals abort with `reason`.
   */
  async stop(reason: 'left' | 'shutdown'): Promise<void> {
    if (this.stopped.signal.aborted) return;
    this.stopped.abort();
    clearTimeout(this.retryTimer);
    clearTimeout(this.reserveTimer);
    this.writer.settled();
    for (const slot of this.slots.values()) slot.end(reason);
    const session = this.session;
    if (session?.alive) await this.store.leave(session).catch(() => undefined); // the key goes with the lease anyway
    await Promise.all([...this.slots].map(([index, slot]) => this.drop(index, slot, reason)));
    await Promise.all(this.watches.map((watch) => watch.close()));
    await this.running;
    await this.reconciling;
    this.publish();
    this.changeLog.flush();
    this.owned.complete();
  }

  /** @internal Testing: own exactly these shards (no assignment is written); `undefined` returns to the record. */
  setOverride(shards: readonly number[] | undefined): void {
    this.override = shards;
    this.schedule();
  }

  /** Keeps a member key on each session, until stopped. */
  private async run(): Promise<void> {
    while (!this.stopped.signal.aborted) {
      const session = await this.ctx.sessions.nextSession(this.stopped.signal);
      if (!session) return;
      this.session = session;
      try {
        const revision = await this.store.join(session, this.ctx.identity);
        if (this.watches.length === 0) this.watch(revision + 1n);
        this.retry.reset();
        this.schedule();
        await untilEnded(session, this.stopped.signal);
      } catch (err) {
        this.failure.report(() => `Joining sharding group '${this.name}' failed, retrying: ${messageOf(err)}`);
        await sleep(this.retry.next(), this.stopped.signal).catch(() => undefined);
      }
    }
  }

  private watch(fromRevision: bigint): void {
    const onChange = () => this.schedule();
    this.watches = [this.store.membersPrefix, this.store.recordKey].map((prefix) =>
      changeWatch(this.ctx.rpc, prefix, onChange).start(fromRevision),
    );
  }

  /** Runs `reconcile` now, or once more after the one in progress. */
  private schedule(): void {
    if (this.stopped.signal.aborted) return;
    if (this.reconciling) {
      this.again = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.again = false;
        try {
          await this.reconcile();
          this.failure.reset();
        } catch (err) {
          this.failure.report(() => `Sharding group '${this.name}' could not read its assignment, retrying: ${messageOf(err)}`);
          this.retryLater();
        }
      } while (this.again && !this.stopped.signal.aborted);
      this.reconciling = undefined;
    })();
  }

  /** One pass: read members and record at one revision, write the next record if it differs, converge on ours. */
  private async reconcile(): Promise<void> {
    const session = this.session;
    if (!session?.alive || this.stopped.signal.aborted) return;
    const { ids, record, recordRevision } = await this.store.read();
    const myId = ids.get(session.hex);
    if (!myId || !session.alive || this.stopped.signal.aborted) return; // our member key is not there (yet)
    if (this.override) {
      this.firstPass?.resolve();
      return this.converge(this.override, session);
    }
    const live = [...ids.values()];
    // Another count is in force while an owner it was written for still lives (same lease: same process, so the
    // same count). A record whose owners are all gone is stale, whatever identities come back.
    if (record && record.shards !== this.count && Object.values(record.leases ?? {}).some((hex) => hex !== session.hex && ids.has(hex))) {
      this.mismatch = new ShardCountMismatchError(this.name, this.count, record.shards);
      this.failure.report(() => this.mismatch?.message ?? '');
      this.firstPass?.reject(this.mismatch);
      return this.converge([], session);
    }
    this.mismatch = undefined;
    const next = withLeases(rebalance(record, live, this.count, this.reserved(record, live)), ids, record);
    if (!sameAssignment(record, next)) {
      const oldest = ids.keys().next().value === session.hex;
      // Not ours to write (yet), or someone else wrote first: the record arrives by the watch, and we look again.
      if (!this.writer.mayWrite(oldest, recordRevision) || !(await this.store.write(next, recordRevision))) return;
    }
    this.writer.settled();
    this.firstPass?.resolve();
    this.firstPass = undefined;
    this.converge(next.owners[myId] ?? [], session);
  }

  /** Departed members whose shards stay theirs for `rebalanceDelayMs` after this instance saw them go. */
  private reserved(record: Assignment | undefined, live: readonly string[]): Set<string> {
    const reserved = new Set<string>();
    if (this.rebalanceDelayMs <= 0 || !record) return reserved;
    const now = performance.now();
    for (const id of [...this.goneSince.keys()]) if (!record.owners[id] || live.includes(id)) this.goneSince.delete(id);
    let next = Number.POSITIVE_INFINITY;
    for (const id of Object.keys(record.owners)) {
      if (live.includes(id)) continue;
      const since = this.goneSince.get(id) ?? now;
      this.goneSince.set(id, since);
      const until = since + this.rebalanceDelayMs;
      if (until > now) {
        reserved.add(id);
        next = Math.min(next, until);
      }
    }
    if (next < Number.POSITIVE_INFINITY) {
      clearTimeout(this.reserveTimer);
      this.reserveTimer = setTimeout(() => this.schedule(), next - now + 1);
      this.reserveTimer.unref();
    }
    return reserved;
  }

  /** Takes the shards assigned to us that we lack, and gives up those no longer ours. */
  private converge(desired: readonly number[], session: LeaseSession): void {
    if (this.stopped.signal.aborted) return;
    const want = new Set(desired);
    for (const [index, slot] of this.slots) if (!want.has(index) && !slot.isLeaving) void this.drop(index, slot, 'moved');
    for (const index of desired) if (!this.slots.has(index) && session.alive) this.take(index, session);
  }

  private take(index: number, session: LeaseSession): void {
    const name = `${this.name}/${index}`;
    const contender = new Contender(
      { rpc: this.ctx.rpc, kind: 'shard', deletes: this.ctx.deletes, namePrefix: namePrefix(this.ctx.prefix, 'shard', name), name },
      session,
      this.ctx.identity,
    );
    const slot = new ShardSlot(this.name, index, contender, this.ctx.clock);
    this.slots.set(index, slot);
    slot.onLoss((reason) => {
      if (this.slots.get(index) !== slot) return;
      void this.drop(index, slot, reason);
    });
    slot.take(slot.signal).then(
      () => this.publish(),
      (err) => {
        if (this.slots.get(index) !== slot || slot.isLeaving) return;
        this.failure.report(() => `Taking shard ${index} of group '${this.name}' failed, retrying: ${messageOf(err)}`);
        void this.drop(index, slot, 'session-lost').then(() => this.retryLater());
      },
    );
  }

  /** Gives a shard up (after its runs), then looks again: the record may have changed meanwhile. */
  private async drop(index: number, slot: ShardSlot, reason: ShardLossReason): Promise<void> {
    const leaving = slot.leave(reason, this.ctx.drainMs);
    this.publish();
    await leaving;
    if (this.slots.get(index) === slot) this.slots.delete(index);
    this.publish();
    if (slot.wasOwned && reason !== 'moved' && reason !== 'left' && reason !== 'shutdown')
      this.ctx.logger.warn(`Shard ${index} of group '${this.name}' lost (${reason})`);
    this.schedule();
  }

  private retryLater(): void {
    if (this.stopped.signal.aborted) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.schedule(), this.retry.next());
    this.retryTimer.unref();
  }

  /** Tells a change of this instance's shards: `owned()`, one `ShardsChanged` event, and the change log. */
  private publish(): void {
    if (this.owned.closed) return;
    const before = this.owned.value;
    const now = this.ownedSlots().map((slot) => slot.index);
    const gained = now.filter((index) => !before.includes(index));
    const lost = before.filter((index) => !now.includes(index));
    if (gained.length === 0 && lost.length === 0) return;
    this.owned.next(now);
    this.changeLog.changed(now, gained, lost);
    this.ctx.events.emit({ type: EtcdLockEventName.ShardsChanged, group: this.name, shards: now, gained, lost });
  }
}

/** Resolves when the session ends or `signal` aborts, leaving no listener behind. */
function untilEnded(session: LeaseSession, signal: AbortSignal): Promise<void> {
  return settled((settle) => {
    settle.onEnd(session.onEnd(() => settle.resolve()));
    settle.onEnd(onAbort(signal, () => settle.resolve()));
  });
}
