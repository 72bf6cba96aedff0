import type { Logger } from '@nestjs/common';
import { CompareResult, CompareTarget, type IKeyValue, SortOrder, SortTarget } from 'etcd3';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import { ShardCountMismatchError, type ShardLossReason } from '../errors.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { assignmentKey, memberPrefix, namePrefix, prefixRangeEnd } from '../etcd/keys.js';
import { Contender } from '../queue/contender.js';
import type { DeleteWatch } from '../queue/delete-watch.js';
import type { LeaseSession } from '../session/lease-session.js';
import type { EtcdSessionService } from '../session/session.service.js';
import { Backoff } from '../util/backoff.js';
import { LogOnce } from '../util/log-once.js';
import { sleep, whenAborted } from '../util/wait-signal.js';
import { type Assignment, parseAssignment, rebalance, sameAssignment } from './assignment.js';
import { ChangeWatch } from './change-watch.js';
import { ShardSlot } from './shard-slot.js';

/** What a group needs from the instance around it. */
export interface ShardGroupContext {
  readonly rpc: EtcdPort;
  readonly sessions: EtcdSessionService;
  /** The deletion watches of shard keys. */
  readonly deletes: DeleteWatch;
  readonly prefix: string;
  readonly identity: string;
  readonly logger: Logger;
  /** How long leaving waits for runs on a shard to end (the module's `shutdownTimeout`). */
  readonly drainMs: number;
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
  private watches: ChangeWatch[] = [];
  private reconciling: Promise<void> | undefined;
  private again = false;
  /** Departed members' ids, with when this instance first saw them gone (for `rebalanceDelayMs`). */
  private readonly goneSince = new Map<string, number>();
  private retryTimer: NodeJS.Timeout | undefined;
  private reserveTimer: NodeJS.Timeout | undefined;
  private override: readonly number[] | undefined;
  private readonly retry = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  private readonly failure: LogOnce;
  private firstPass: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  mismatch: ShardCountMismatchError | undefined;

  constructor(
    readonly name: string,
    readonly count: number,
    private readonly rebalanceDelayMs: number,
    private readonly ctx: ShardGroupContext,
  ) {
    this.failure = new LogOnce((message) => ctx.logger.warn(message));
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
    for (const slot of this.slots.values()) slot.end(reason);
    const session = this.session;
    if (session?.alive) await this.leaveMembers(session).catch(() => undefined); // the key goes with the lease anyway
    await Promise.all([...this.slots].map(([index, slot]) => this.drop(index, slot, reason)));
    await Promise.all(this.watches.map((watch) => watch.close()));
    await this.running;
    await this.reconciling;
    this.publish();
    this.owned.complete();
  }

  /** Deletes our member key, and the record too if no member is left (so a group leaves nothing behind). */
  private async leaveMembers(session: LeaseSession): Promise<void> {
    await this.ctx.rpc.deleteRange({ key: Buffer.from(this.memberKey(session)) }, `leave sharding group '${this.name}'`);
    const members = Buffer.from(memberPrefix(this.ctx.prefix, this.name));
    await this.ctx.rpc.txn(
      {
        // An empty range compares as create revision 0: no member left.
        compare: [{ key: members, range_end: prefixRangeEnd(members), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' }],
        success: [{ request_delete_range: { key: Buffer.from(assignmentKey(this.ctx.prefix, this.name)) } }],
        failure: [],
      },
      `remove the assignment of sharding group '${this.name}'`,
    );
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
        const res = await this.ctx.rpc.txn(
          {
            compare: [],
            success: [{ request_put: { key: Buffer.from(this.memberKey(session)), value: Buffer.from(this.ctx.identity), lease: session.id } }],
          },
          `join sharding group '${this.name}'`,
        );
        if (this.watches.length === 0) this.watch(BigInt(res.header.revision) + 1n);
        this.retry.reset();
        this.schedule();
        await Promise.race([whenSessionEnds(session), whenAborted(this.stopped.signal)]);
      } catch (err) {
        this.failure.report(() => `Joining sharding group '${this.name}' failed, retrying: ${messageOf(err)}`);
        await sleep(this.retry.next(), this.stopped.signal).catch(() => undefined);
      }
    }
  }

  private watch(fromRevision: bigint): void {
    const onChange = () => this.schedule();
    this.watches = [
      new ChangeWatch(this.ctx.rpc, memberPrefix(this.ctx.prefix, this.name), onChange),
      new ChangeWatch(this.ctx.rpc, assignmentKey(this.ctx.prefix, this.name), onChange),
    ];
    for (const watch of this.watches) watch.start(fromRevision);
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
    const members = Buffer.from(memberPrefix(this.ctx.prefix, this.name));
    const recordKey = Buffer.from(assignmentKey(this.ctx.prefix, this.name));
    const res = await this.ctx.rpc.txn(
      {
        compare: [],
        success: [
          { request_range: { key: members, range_end: prefixRangeEnd(members), sort_order: SortOrder.Ascend, sort_target: SortTarget.Create } },
          { request_range: { key: recordKey } },
        ],
      },
      `read sharding group '${this.name}'`,
    );
    const ids = memberIds(res.responses[0].response_range.kvs, members.length);
    const myId = ids.get(session.hex);
    if (!myId || !session.alive || this.stopped.signal.aborted) return; // our member key is not there (yet)
    const recordKv = res.responses[1].response_range.kvs[0];
    const record = recordKv ? parseAssignment(recordKv.value.toString()) : undefined;
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
      const written = await this.ctx.rpc.txn(
        {
          compare: [{ key: recordKey, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: recordKv?.mod_revision ?? '0' }],
          success: [{ request_put: { key: recordKey, value: Buffer.from(JSON.stringify(next)) } }],
          failure: [],
        },
        `write the assignment of sharding group '${this.name}'`,
      );
      // Someone else wrote first: its record arrives by the watch, and we look again.
      if (!written.succeeded) return;
    }
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
      { rpc: this.ctx.rpc, deletes: this.ctx.deletes, namePrefix: namePrefix(this.ctx.prefix, 'shard', name), name },
      session,
      this.ctx.identity,
    );
    const slot = new ShardSlot(this.name, index, contender);
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
    if (slot.wasOwned && reason !== 'moved' && reason !== 'left' && reason !== 'shutdown') this.ctx.logger.warn(`Shard ${index} of group '${this.name}' lost (${reason})`);
    this.schedule();
  }

  private retryLater(): void {
    if (this.stopped.signal.aborted) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.schedule(), this.retry.next());
    this.retryTimer.unref();
  }

  private publish(): void {
    if (this.owned.closed) return;
    this.owned.next(this.ownedSlots().map((slot) => slot.index));
  }

  private memberKey(session: LeaseSession): string {
    return `${memberPrefix(this.ctx.prefix, this.name)}${session.hex}`;
  }
}

/**
 * Member id per lease hex, oldest member first. The id is the identity; a later member with an identity already
 * taken is told apart by its lease (`identity#hex`), the same way on every replica.
 */
function memberIds(kvs: readonly IKeyValue[], prefixLength: number): Map<string, string> {
  const ids = new Map<string, string>();
  const taken = new Set<string>();
  for (const kv of kvs) {
    const hex = kv.key.subarray(prefixLength).toString();
    const identity = kv.value.toString();
    const id = taken.has(identity) ? `${identity}#${hex}` : identity;
    taken.add(id);
    ids.set(hex, id);
  }
  return ids;
}

/** The record names each owner's lease (live ones as now; reserved ones as before), for the count check. */
function withLeases(next: Assignment, ids: Map<string, string>, previous: Assignment | undefined): Assignment {
  const hexOf = new Map([...ids].map(([hex, id]) => [id, hex]));
  const leases: Record<string, string> = {};
  for (const id of Object.keys(next.owners)) {
    const hex = hexOf.get(id) ?? previous?.leases?.[id];
    if (hex) leases[id] = hex;
  }
  return { ...next, leases };
}

function whenSessionEnds(session: LeaseSession): Promise<void> {
  return new Promise((resolve) => {
    if (!session.alive) return resolve();
    session.onEnd(() => resolve());
  });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
