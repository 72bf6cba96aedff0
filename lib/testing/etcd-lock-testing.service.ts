import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { filter, firstValueFrom, type Observable } from 'rxjs';
import { EtcdLockError, InvalidArgumentError } from '../errors.js';
import { type EtcdLockEvent, EtcdLockEventName, EtcdLockEvents } from '../events/etcd-lock.events.js';
import { type KeyKind, leaseHex, namePrefix } from '../etcd/keys.js';
import type { Leadership } from '../election/leadership.interface.js';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { EtcdSessionService } from '../session/session.service.js';
import type { ShardGroup } from '../sharding/shard-group.js';
import { ShardingService } from '../sharding/sharding.service.js';
import { assertName, assertValue } from '../util/validation.js';
import { InMemoryEtcd, type StoredEntry } from './in-memory-etcd.js';
import { later } from './etcd-rules.js';

/** A lock or leadership held by a simulated other replica (see `EtcdLockTesting.holdLock`). */
export interface SimulatedHolder {
  /** Its key in etcd. */
  readonly key: string;
  /** Its fencing token (the create revision of its key). */
  readonly fencingToken: bigint;
  /** The other replica stops: its lease is revoked and the next in line takes over. */
  release(): Promise<void>;
}

/** etcd's maximum TTL: a simulated replica's lease lives until released. */
const FOREVER_TTL = 9_000_000_000;

/**
 * Controls for tests, from `EtcdLockTestingModule`: play the other replicas of the app, so a test can make this
 * instance leader or follower, hold a lock elsewhere, give it shards or take one away, or make a held lock or the whole
 * session be lost, and
 * check how its code reacts. Every control acts on the in-memory etcd the way another replica or etcd itself
 * would (keys and leases), so the library under test reacts through its real code paths. Call them after
 * `app.init()`.
 */
@Injectable()
export class EtcdLockTesting implements OnApplicationShutdown {
  /** Leases of the simulated replicas, released at shutdown so the in-memory etcd is left clean. */
  private readonly replicas = new Set<bigint>();

  /** @internal Nest constructs it. */
  constructor(
    /** The in-memory etcd this app uses. */
    readonly etcd: InMemoryEtcd,
    private readonly sessions: EtcdSessionService,
    private readonly elections: LeaderElectionService,
    private readonly events: EtcdLockEvents,
    private readonly sharding: ShardingService,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
  ) {}

  /**
   * Makes this instance the leader of `election` (default: the module's): it campaigns if it did not, and every
   * candidate ahead of it steps down (simulated replicas are released; other app instances sharing the
   * in-memory etcd lose their key and campaign again behind it). Resolves with the term once this instance
   * leads (its `signal` aborts when `makeFollower()` or `expireSession()` ends it).
   */
  async makeLeader(election?: string): Promise<Leadership> {
    const name = this.electionName(election);
    const prefix = namePrefix(this.prefix, 'election', name);
    let led = false;
    const leading = this.elections.campaign(name).then(() => (led = true));
    // Until we lead, whoever is ahead of us steps down, also an app instance that campaigns again before our
    // key is in (it then queues behind us).
    const stepDown = () => {
      if (led) return;
      const mine = this.ownKey('election', name);
      for (const entry of this.byAge(prefix)) {
        if (entry.key === mine) break;
        this.remove(entry);
      }
    };
    const off = this.server.onChange(() => later(stepDown));
    stepDown();
    await leading.finally(off);
    const term = this.elections.term(name);
    if (!term) throw new EtcdLockError(`this instance led election '${name}' only briefly: its term ended at once`);
    return term;
  }

  /**
   * Makes another replica (identity `leader`) the leader of `election`, with this instance campaigning behind
   * it: as when this instance's key was lost and another replica took over (a term in progress ends, its signal
   * aborting with `LeadershipLostError`, reason `key-deleted`). Resolves once this instance is a follower, queued
   * again. Undo with `makeLeader()`.
   */
  async makeFollower(election?: string, leader = 'another-replica'): Promise<void> {
    const name = this.electionName(election);
    assertValue(leader, 'leader');
    const prefix = namePrefix(this.prefix, 'election', name);
    // Watching our leadership also (re)starts our campaign: a follower is a candidate.
    let leading = true;
    const leadership = this.elections.changes(name).subscribe((now) => {
      leading = now;
    });
    const queued = this.until(() => !leading && this.etcd.entries(prefix).some((e) => e.key === this.ownKey('election', name)));
    const [first] = this.byAge(prefix);
    const mine = this.ownKey('election', name);
    if (!first || first.key === mine) {
      // One revision, as when our lease expired and the other replica's key was next in line.
      const id = this.grantReplica();
      this.server.txn({
        compare: [],
        success: [
          ...(mine ? [{ request_delete_range: { key: Buffer.from(mine) } }] : []),
          { request_put: { key: Buffer.from(prefix + leaseHex(id.toString())), value: Buffer.from(leader), lease: id.toString() } },
        ],
      });
    }
    await queued.finally(() => leadership.unsubscribe());
  }

  /**
   * Another replica takes the lock `name` (or queues for it, in arrival order, if it is held): `tryAcquire`
   * then returns null, `acquire` waits, `@Singleton` methods are skipped, until `release()`.
   */
  async holdLock(name: string, value = 'another-replica'): Promise<SimulatedHolder> {
    assertName(name);
    assertValue(value);
    const id = this.grantReplica();
    const key = namePrefix(this.prefix, 'lock', name) + leaseHex(id.toString());
    // The key is new (its lease is): the put's revision is its create revision.
    const put = this.server.put({ key: Buffer.from(key), value: Buffer.from(value), lease: id.toString() });
    return {
      key,
      fencingToken: BigInt(put.header.revision),
      release: async () => this.releaseReplica(id),
    };
  }

  /**
   * Makes this instance's lock `name` be lost, as when its key is deleted behind its back (an operator, or a
   * lease expiry): the lock's `signal` aborts with a `LockLostError` (reason `key-deleted`) and a `LockLost`
   * event is emitted. Resolves once that happened. Throws `InvalidArgumentError` if this instance does not hold
   * the lock.
   */
  async loseLock(name: string): Promise<void> {
    assertName(name);
    const mine = this.ownKey('lock', name);
    const [holder] = this.byAge(namePrefix(this.prefix, 'lock', name));
    if (!mine || holder?.key !== mine) throw new InvalidArgumentError('name', `this instance does not hold the lock '${name}'`);
    const lost = this.next(EtcdLockEventName.LockLost, (e) => e.type === EtcdLockEventName.LockLost && e.name === name);
    this.server.deleteRange({ key: Buffer.from(mine) });
    await lost;
  }

  /**
   * Makes this instance's session lease expire now, as after a partition longer than its TTL: every lock it
   * holds is lost, its leaderships end, and a `SessionLost` event is emitted; then the library grants a new
   * lease (`SessionRenewed`). Resolves once the loss is noticed.
   */
  async expireSession(): Promise<void> {
    const { alive, leaseId } = this.sessions.status();
    if (!alive || !leaseId) throw new EtcdLockError('There is no live etcd session to expire');
    const lost = this.next(EtcdLockEventName.SessionLost);
    // As when keepalives stop for a whole TTL: this instance's own deadline ends the session before etcd expires it.
    this.sessions.peek()?.close('deadline-passed');
    this.etcd.expireLease(leaseId);
    await lost;
  }

  /**
   * Makes this instance own exactly `shards` of `group`, whatever the assignment says (it must be a member: a
   * `@Sharded` method's group, or one it joined). Resolves once it owns them; the shards' locks are real, so a shard
   * another app instance holds is taken once that one lets it go.
   */
  async giveShards(group: string, shards: readonly number[]): Promise<void> {
    const member = this.groupOf(group);
    for (const index of shards) {
      if (!Number.isInteger(index) || index < 0 || index >= member.count) {
        throw new InvalidArgumentError('shards', `${index} is not a shard of group '${group}' (0 … ${member.count - 1})`);
      }
    }
    const wanted = [...new Set(shards)].sort((a, b) => a - b);
    member.setOverride(wanted);
    await firstValueFrom(member.changes().pipe(filter((owned) => owned.join() === wanted.join())));
  }

  /** Takes shard `index` of `group` away from this instance (its signal aborts with reason `moved`). */
  async takeShard(group: string, index: number): Promise<void> {
    const member = this.groupOf(group);
    const owned = member.ownedSlots().map((slot) => slot.index);
    if (!owned.includes(index)) throw new InvalidArgumentError('index', `this instance does not own shard ${index} of group '${group}'`);
    await this.giveShards(
      group,
      owned.filter((shard) => shard !== index),
    );
  }

  /** Returns `group` to the assignment kept in etcd, after `giveShards`/`takeShard`. */
  followAssignment(group: string): void {
    this.groupOf(group).setOverride(undefined);
  }

  /** Nest lifecycle hook: releases the simulated replicas. */
  onApplicationShutdown(): void {
    for (const id of [...this.replicas]) this.releaseReplica(id);
  }

  private groupOf(group: string): ShardGroup {
    assertName(group, 'group');
    const member = this.sharding.groupOf(group);
    if (!member) throw new InvalidArgumentError('group', `this instance is not a member of sharding group '${group}'`);
    return member;
  }

  private get server() {
    return this.etcd.server;
  }

  private get prefix(): string {
    return this.options.prefix;
  }

  private electionName(election: string | undefined): string {
    if (election === undefined) return this.elections.defaultElection;
    assertName(election, 'election');
    return election;
  }

  /** This instance's key under a name, on its current session; undefined without a live session. */
  private ownKey(kind: KeyKind, name: string): string | undefined {
    const { alive, leaseId } = this.sessions.status();
    return alive && leaseId ? namePrefix(this.prefix, kind, name) + leaseId : undefined;
  }

  /** The keys under a name, oldest first: the first one holds it. */
  private byAge(prefix: string): StoredEntry[] {
    return this.etcd.entries(prefix).sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1));
  }

  private remove(entry: StoredEntry): void {
    const lease = BigInt(`0x${entry.leaseId}`);
    if (this.replicas.has(lease)) this.releaseReplica(lease);
    else this.server.deleteRange({ key: Buffer.from(entry.key) });
  }

  private grantReplica(): bigint {
    const id = this.server.grant(0n, FOREVER_TTL);
    this.replicas.add(id);
    return id;
  }

  private releaseReplica(id: bigint): void {
    if (!this.replicas.delete(id)) return;
    if (this.server.hasLease(id)) this.server.revoke(id);
  }

  private next(type: EtcdLockEvent['type'], match: (e: EtcdLockEvent) => boolean = () => true): Promise<EtcdLockEvent> {
    const events: Observable<EtcdLockEvent> = this.events.events$;
    return firstValueFrom(events.pipe(filter((e) => e.type === type && match(e))));
  }

  /** Resolves once `check` holds, tested after every change in the in-memory etcd and every leadership change. */
  private until(check: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const test = () => {
        if (!check()) return;
        off();
        subscription.unsubscribe();
        resolve();
      };
      const off = this.server.onChange(() => later(test));
      const subscription = this.events.events$.subscribe(() => later(test));
      later(test);
    });
  }
}
