import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { type Observable, of } from 'rxjs';
import { InvalidArgumentError } from '../errors.js';
import { kindPrefix } from '../etcd/keys.js';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { EtcdLockEvents } from '../events/etcd-lock.events.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdSessionService } from '../session/session.service.js';
import { assertDuration, assertName, assertOptions, assertShardCount } from '../util/validation.js';
import { ShardGroup } from './shard-group.js';
import { shardOf } from './shard-hash.js';
import { OwnedShards, shardContext } from './shard-set.js';
import type { ShardSet } from './shard.interface.js';
import { oldestFirst } from '../etcd/requests.js';

/** Options of `join` and `@Sharded`. */
export interface ShardGroupOptions {
  /** How many shards the group has: 1 to 4096, the same on every member. */
  shards: number;
  /**
   * The sticky option: a departed member's shards wait this long (ms) for a member with the same identity to come
   * back before they move, so a rolling restart moves nothing. They have no owner meanwhile. Default 0.
   */
  rebalanceDelayMs?: number;
}

const GROUP_OPTIONS = ['shards', 'rebalanceDelayMs'] as const;

/**
 * Sharded work: every member of a group owns a share of its shards, each shard owned by exactly one member at a
 * time (a lock per shard, on the instance's session lease). Members agree on a balanced assignment kept in etcd,
 * and move shards only when members come and go.
 */
@Injectable()
export class ShardingService implements OnApplicationBootstrap {
  private readonly logger = new Logger('EtcdLock');
  private readonly groups = new Map<string, ShardGroup>();
  /** Groups being left, until their last shard key is deleted. */
  private readonly leaving = new Map<string, Promise<void>>();
  /** Groups declared by decorators, started at bootstrap. */
  private readonly declared = new Map<string, { shards: number; rebalanceDelayMs: number }>();
  private closed = false;

  /** @internal Nest constructs it. */
  constructor(
    private readonly sessions: EtcdSessionService,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
    private readonly connection: EtcdConnection,
    private readonly watches: DeletionWatches,
    private readonly events: EtcdLockEvents,
  ) {}

  /** The shards of the `@Sharded` run in progress, from anywhere in its async call chain; undefined outside one. */
  static current(): ShardSet | undefined {
    return shardContext.getStore();
  }

  /** Same as the static `ShardingService.current()`. */
  current(): ShardSet | undefined {
    return shardContext.getStore();
  }

  /** The shard of `key` among `shards`: MurmurHash3 (x86, 32-bit, seed 0) of its UTF-8 bytes, modulo `shards`. */
  static shardOf(key: string, shards: number): number {
    assertShardCount(shards);
    if (typeof key !== 'string') throw new InvalidArgumentError('key', `must be a string, got ${typeof key}`);
    return shardOf(key, shards);
  }

  /** Nest lifecycle hook: joins the groups `@Sharded` methods declared. */
  onApplicationBootstrap(): void {
    for (const [name, options] of this.declared) void this.groupFor(name, options).catch(() => undefined);
  }

  /** @internal At shutdown (from the runner's hook, which ends terms alike): leaves every group. */
  async leaveAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.groups.values()].map((group) => group.stop('shutdown')));
  }

  /**
   * Joins `group` (for code that does not use `@Sharded`): resolves once this instance is a member and has read
   * the assignment; its shards are taken as they come free (see `owned`). Rejects with `ShardCountMismatchError`
   * if the group has another shard count in force.
   */
  async join(group: string, options: ShardGroupOptions): Promise<void> {
    const resolved = this.check(group, options);
    if (this.closed) throw new InvalidArgumentError('group', 'cannot join: the application is shutting down');
    this.sessions.current(); // EtcdUnavailableError now, rather than waiting for a session
    try {
      await this.groupFor(group, resolved);
    } catch (err) {
      await this.leave(group);
      throw err;
    }
  }

  /** Leaves `group`: its shards' signals abort with reason `left`, and each is handed over once its runs ended. */
  async leave(group: string): Promise<void> {
    assertName(group, 'group');
    const member = this.groups.get(group);
    this.groups.delete(group);
    this.declared.delete(group);
    if (!member) return this.leaving.get(group);
    // A join of the same group meanwhile waits for this: its shard keys have the same names as the ones we delete.
    const left = member.stop('left').finally(() => {
      if (this.leaving.get(group) === left) this.leaving.delete(group);
    });
    this.leaving.set(group, left);
    await left;
  }

  /** This instance's shards of `group` over time, ascending (`[]` while it owns none or is not a member). */
  owned(group: string): Observable<number[]> {
    assertName(group, 'group');
    return this.groups.get(group)?.changes() ?? of([]);
  }

  /** @internal The shards of `group` this instance owns now, for a run (no request). */
  snapshot(group: string): OwnedShards | undefined {
    const member = this.groups.get(group);
    const shards = member?.ownedSlots() ?? [];
    return member && shards.length > 0 ? new OwnedShards(group, member.count, shards) : undefined;
  }

  /** @internal The group (for runs and testing controls). */
  groupOf(group: string): ShardGroup | undefined {
    return this.groups.get(group);
  }

  /**
   * Who owns which shard of `group` now, by identity: one read of the shard keys (the oldest key of each shard
   * owns it). A shard being handed over may be missing.
   */
  async assignment(group: string): Promise<Map<string, number[]>> {
    assertName(group, 'group');
    const prefix = Buffer.from(`${kindPrefix(this.options.prefix, 'shard')}${group}/`);
    const res = await this.connection.port.range(oldestFirst(prefix), `read the owners of sharding group '${group}'`);
    const seen = new Set<number>();
    const owners = new Map<string, number[]>();
    for (const kv of res.kvs) {
      const index = Number(kv.key.subarray(prefix.length).toString().split('/')[0]);
      if (!Number.isInteger(index) || seen.has(index)) continue;
      seen.add(index);
      const identity = kv.value.toString();
      owners.set(identity, [...(owners.get(identity) ?? []), index]);
    }
    for (const list of owners.values()) list.sort((a, b) => a - b);
    return owners;
  }

  /** @internal Names a group a `@Sharded` method works on; joined at bootstrap. */
  declare(group: string, options: ShardGroupOptions, label: string): void {
    const resolved = this.check(group, options, label);
    this.declared.set(group, resolved);
  }

  private check(group: string, options: ShardGroupOptions, label?: string): { shards: number; rebalanceDelayMs: number } {
    assertName(group, 'group');
    assertOptions(options, 'options', GROUP_OPTIONS);
    if (options === undefined) throw new InvalidArgumentError('options', 'must give { shards }');
    assertShardCount(options.shards, 'options.shards');
    if (options.rebalanceDelayMs !== undefined) assertDuration(options.rebalanceDelayMs, 'options.rebalanceDelayMs');
    const known = this.groups.get(group)?.count ?? this.declared.get(group)?.shards;
    if (known !== undefined && known !== options.shards) {
      throw new InvalidArgumentError(
        'options.shards',
        `group '${group}' is already declared with ${known} shards in this app, not ${options.shards}${label ? ` (${label})` : ''}`,
      );
    }
    return { shards: options.shards, rebalanceDelayMs: options.rebalanceDelayMs ?? 0 };
  }

  private async groupFor(name: string, options: { shards: number; rebalanceDelayMs: number }): Promise<void> {
    while (this.leaving.has(name)) await this.leaving.get(name);
    if (this.groups.has(name)) return;
    const group = new ShardGroup(name, options.shards, options.rebalanceDelayMs, {
      rpc: this.connection.port,
      sessions: this.sessions,
      deletes: this.watches.of('shard'),
      prefix: this.options.prefix,
      identity: this.options.identity,
      logger: this.logger,
      events: this.events,
      drainMs: this.options.shutdownTimeout,
      clock: this.options.clock,
    });
    this.groups.set(name, group);
    await group.start();
  }
}
