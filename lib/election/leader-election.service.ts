import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { distinctUntilChanged, map, type Observable } from 'rxjs';
import { ElectionCampaign } from './election-campaign.js';
import type { Leadership } from './leadership.interface.js';
import { leadershipContext } from './leadership-term.js';
import { EtcdLockEvents } from '../events/etcd-lock.events.js';
import { readHolder, watchHolder } from '../queue/holder-watch.js';
import { namePrefix, priorityPrefix } from '../etcd/keys.js';
import { inspectQueue, type QueueSnapshot } from '../inventory/queue-inspect.js';
import { EtcdSessionService } from '../session/session.service.js';
import { assertName, assertOptions, assertSignal } from '../util/validation.js';
import { onAbort } from '../util/wait-signal.js';
import { settled } from '../util/settle-once.js';
import { EtcdUnavailableError, InvalidArgumentError, NotLeaderError } from '../errors.js';
import { withTimeout } from '../util/wait-signal.js';

function assertIdentity(value: unknown, argument: string): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(
      argument,
      `must be a candidate's identity (a non-empty string), got ${typeof value === 'string' ? 'an empty string' : typeof value}`,
    );
  }
}

/** This instance's part in one election, from local state. */
export interface ElectionStatus {
  /** The election's name. */
  readonly election: string;
  /** Whether this instance leads it now. */
  readonly leader: boolean;
  /** Whether this instance is a candidate (leading or queued). */
  readonly campaigning: boolean;
  /** The fencing token of this instance's term, while it leads. */
  readonly fencingToken: bigint | undefined;
}

/**
 * Leader election on etcd, interoperable with `etcdctl elect election/<name>`. Campaigning starts at
 * `onApplicationBootstrap` (nothing leader-only runs before); each named election is created on first use.
 */
@Injectable()
export class LeaderElectionService implements OnApplicationBootstrap {
  private readonly logger = new Logger('EtcdLock');
  private readonly campaigns = new Map<string, ElectionCampaign>();
  /** Elections to campaign in from bootstrap on (the default one and those named by decorators). */
  private readonly declared = new Set<string>();
  private bootstrapped = false;
  private closed = false;
  private readonly drains: Array<(election: string) => Promise<unknown>> = [];

  /** @internal Nest constructs it. */
  constructor(
    private readonly sessions: EtcdSessionService,
    private readonly events: EtcdLockEvents,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
    private readonly connection: EtcdConnection,
    private readonly watches: DeletionWatches,
  ) {
    this.declared.add(options.election);
  }

  /** Nest lifecycle hook: starts the declared campaigns. */
  onApplicationBootstrap(): void {
    this.bootstrapped = true;
    for (const name of this.declared) this.campaignFor(name).start();
  }

  /**
   * The term of the `@LeaderOnly` run (or `@OnLeadership` call) in progress, from anywhere in its async call
   * chain; undefined outside one.
   */
  static current(): Leadership | undefined {
    return leadershipContext.getStore();
  }

  /** Same as the static `LeaderElectionService.current()`. */
  current(): Leadership | undefined {
    return leadershipContext.getStore();
  }

  /**
   * This instance's term in `election` (default: the module's) if it leads now, else undefined. Synchronous, from
   * local state, no etcd request; campaigning in an election starts on its first use.
   */
  term(name?: string): Leadership | undefined {
    const election = this.nameOf(name);
    if (!this.campaigns.has(election) && this.bootstrapped && !this.closed) this.campaignFor(election).start();
    return this.campaigns.get(election)?.term;
  }

  /** @internal Each term of this instance's in `election`, as it starts; campaigns in it from bootstrap on. */
  terms(name: string): Observable<Leadership> {
    this.declare(name);
    const campaign = this.campaignFor(name);
    if (this.bootstrapped && !this.closed) campaign.start();
    return campaign.terms();
  }

  /** True while this instance leads the election; synchronous, from local state, no etcd request. */
  isLeader(name?: string): boolean {
    return this.term(name) !== undefined;
  }

  /** The identity of the current leader, or `null` while there is none (one etcd read). */
  async leader(name?: string): Promise<string | null> {
    const holder = await readHolder(this.connection.port, 'election', this.prefixOf(this.nameOf(name)));
    return holder ? holder.value : null;
  }

  /** The leader and the candidates in the order they would lead, with their identities and tokens: one etcd read. */
  inspect(name?: string): Promise<QueueSnapshot> {
    const election = this.nameOf(name);
    return inspectQueue(this.connection.port, this.options.prefix, 'election', election);
  }

  /** The leader's identity over time (`null` while there is none). Watches etcd; sees etcdctl leaders too. */
  observe(name?: string): Observable<string | null> {
    return watchHolder(this.connection.port, 'election', this.prefixOf(this.nameOf(name))).pipe(
      map((holder) => (holder ? holder.value : null)),
      distinctUntilChanged(),
    );
  }

  /** This instance's own leadership over time (starts campaigning in the election if not yet, unless resigned). */
  changes(name?: string): Observable<boolean> {
    const election = this.nameOf(name);
    const campaign = this.campaignFor(election);
    if (this.bootstrapped && !this.closed) campaign.start();
    return campaign.changes();
  }

  /**
   * Steps down (the term's signal aborts with reason `resigned`), or leaves the queue, and stops campaigning until
   * `campaign()` is called (reading leadership, `changes()` or `term()`, does not campaign again).
   */
  async resign(name?: string): Promise<void> {
    await this.campaigns.get(this.nameOf(name))?.stop('resigned');
  }

  /**
   * Campaigns (again) and resolves once this instance leads. Rejects with the signal's reason if it aborts first;
   * the campaign itself goes on until `resign()`. Rejects with `EtcdUnavailableError` once the application is
   * shutting down (at once if it already is).
   */
  async campaign(name?: string, options?: { signal?: AbortSignal }): Promise<void> {
    const election = this.nameOf(name);
    assertOptions(options, 'options', ['signal']);
    if (options?.signal !== undefined) assertSignal(options.signal, 'options.signal');
    if (this.closed) throw this.shuttingDown(election);
    const campaign = this.campaignFor(election);
    campaign.start(true);
    if (campaign.isLeader) return;
    const signal = options?.signal;
    await settled((settle) => {
      // The leadership stream may answer synchronously, inside subscribe(): `settle` is ready before it.
      settle.onEnd(onAbort(signal, (reason) => settle.reject(reason)));
      settle.onEnd(
        campaign.changes().subscribe({
          next: (leader) => leader && settle.resolve(),
          complete: () => settle.reject(this.shuttingDown(election)),
        }),
      );
    });
  }

  /**
   * Hands the leadership of `election` (default: the module's) to the candidate whose identity is `to`, or to the
   * next in line, with no election in between: this instance's term ends (signal reason `transferred`), its
   * leader-only work drains (bounded by `shutdownTimeout`), and in one transaction the chosen candidate's key
   * becomes the oldest; nobody else can lead in between. This instance then campaigns again behind. Resolves with
   * the new leader's identity. `NotLeaderError` unless this instance leads; `UnknownCandidateError` (leadership
   * kept) when `to` is not a candidate, or nobody else campaigns.
   */
  async transfer(name?: string, to?: string): Promise<string> {
    const election = this.nameOf(name);
    if (to !== undefined) assertIdentity(to, 'to');
    const campaign = this.campaigns.get(election);
    if (!campaign) throw new NotLeaderError(election);
    const next = await campaign.transfer(to);
    // Our key was gone when read: not leading any more (lost meanwhile).
    if (next === null) throw new NotLeaderError(election);
    return next;
  }

  /** The leader-only work of `election` ended (or `shutdownTimeout` passed): what a transfer waits for. */
  private drained(election: string): Promise<unknown> {
    return withTimeout(
      Promise.allSettled(this.drains.map((drain) => drain(election))),
      this.options.shutdownTimeout,
      () => new Error('drain'),
    ).catch(() => undefined);
  }

  /** @internal How the leader-only work of an election is awaited before a transfer (the runner registers it). */
  addDrain(drain: (election: string) => Promise<unknown>): void {
    this.drains.push(drain);
  }

  /** @internal The election used when no name is given (the module's `election` option). */
  get defaultElection(): string {
    return this.options.election;
  }

  /** @internal Names an election to campaign in from bootstrap on (used by the decorator explorer). */
  declare(name: string): void {
    assertName(name, 'election');
    this.declared.add(name);
  }

  /**
   * @internal At shutdown: ends every term now (signals abort with reason `shutdown`), then resigns from each election once
   * `drained(election)` resolves (the work its term guarded has ended), so no two instances' work overlaps.
   */
  async resignAll(drained: (election: string) => Promise<unknown> = async () => {}): Promise<void> {
    this.closed = true;
    for (const campaign of this.campaigns.values()) campaign.endTerm('shutdown');
    await Promise.all(
      [...this.campaigns.values()].map(async (campaign) => {
        await drained(campaign.name);
        await campaign.stop('shutdown');
      }),
    );
    for (const campaign of this.campaigns.values()) campaign.close();
  }

  /** Names of the elections this instance campaigns in, with its leadership in each. */
  status(): ElectionStatus[] {
    return [...this.campaigns.values()].map((c) => ({
      election: c.name,
      leader: c.isLeader,
      campaigning: c.campaigning,
      fencingToken: c.term?.fencingToken,
    }));
  }

  private campaignFor(name: string): ElectionCampaign {
    let campaign = this.campaigns.get(name);
    if (!campaign) {
      campaign = new ElectionCampaign(
        this.sessions,
        { rpc: this.connection.port, kind: 'election', deletes: this.watches.of('election'), namePrefix: this.prefixOf(name), name },
        this.options.identity,
        this.logger,
        this.events,
        () => this.drained(name),
        this.options.leaderPriority === undefined
          ? undefined
          : { priority: this.options.leaderPriority, root: priorityPrefix(this.options.prefix, name) },
        this.options.maxTermMs,
        this.options.clock,
      );
      this.campaigns.set(name, campaign);
    }
    return campaign;
  }

  private shuttingDown(election: string): EtcdUnavailableError {
    return new EtcdUnavailableError(
      `Cannot campaign in election '${election}': the application is shutting down`,
      this.connection.port.endpoints,
    );
  }

  private nameOf(name: string | undefined): string {
    if (name === undefined) return this.options.election;
    assertName(name, 'election');
    return name;
  }

  private prefixOf(name: string): string {
    return namePrefix(this.options.prefix, 'election', name);
  }
}
