import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { isBrokenCircuitError } from 'cockatiel';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdUnavailableError } from '../errors.js';
import { checkAccess } from '../etcd/access-probe.js';
import { keyRoots } from '../etcd/keys.js';
import { EtcdLockEventName, EtcdLockEvents } from '../events/etcd-lock.events.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { LeaseSession, randomLeaseId, type SessionEndReason } from './lease-session.js';
import { OrphanLeases } from './orphan-leases.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { Backoff } from '../util/backoff.js';
import { LogOnce } from '../util/log-once.js';
import { onAbort, sleep, withTimeout } from '../util/wait-signal.js';
import { messageOf } from '../util/error-message.js';
import { settled } from '../util/settle-once.js';

/** What `EtcdSessionService.status()` reports. */
export interface SessionStatus {
  /** True while the lease is alive by our local deadline. */
  readonly alive: boolean;
  /** The lease id in hex, or null before the first grant. */
  readonly leaseId: string | null;
  /** Granted TTL in seconds. */
  readonly ttl: number;
  /** Time left before the local deadline, in ms (0 once lost). */
  readonly remainingMs: number;
  /** This instance's identity. */
  readonly identity: string;
}

const REGRANT_MIN_MS = 250;
/** The revoke at shutdown gets at least this long, even when draining the calls used all of `shutdownTimeout`. */
const REVOKE_AT_LEAST_MS = 500;
const REGRANT_MAX_MS = 5000;

/**
 * The app instance's session with etcd: one lease, granted at start-up, kept alive, revoked at shutdown.
 * When a lease is lost, a new one is granted as soon as etcd answers; locks taken on the old one stay lost.
 */
@Injectable()
export class EtcdSessionService implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly rpc: EtcdPort;
  private readonly logger = new Logger('EtcdLock');
  private lease: LeaseSession | undefined;
  private readonly orphans: OrphanLeases;
  private readonly sessionListeners = new Set<(session: LeaseSession) => void>();
  private regrantTimer: NodeJS.Timeout | undefined;
  /** A grant under way after a loss: shutdown waits for it, so the lease it brings is revoked too. */
  private regranting: Promise<void> | undefined;
  private readonly regrantBackoff = new Backoff(REGRANT_MIN_MS, REGRANT_MAX_MS);
  private readonly outage = new LogOnce((message) => this.logger.error(message));
  private shuttingDown = false;
  /** When the hand-over at shutdown must end (`performance.now()`), once shutdown has begun. */
  private shutdownDeadline: number | undefined;

  /** @internal Nest constructs it. */
  constructor(
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
    private readonly events: EtcdLockEvents,
    private readonly connection: EtcdConnection,
    private readonly watches: DeletionWatches,
    telemetry: Telemetry,
  ) {
    this.rpc = connection.port;
    this.orphans = new OrphanLeases(this.rpc);
    telemetry.observeSession(() => (this.lease ? this.lease.remainingMs : undefined));
  }

  /**
   * Nest lifecycle hook: grants the session and checks the user may do all we do under the prefix, within
   * `connectTimeout`. A transport failure is retried until then (etcd may be starting beside us); etcd refusing
   * us (credentials, permissions) fails at once. On failure nothing is left behind.
   */
  async onModuleInit(): Promise<void> {
    const deadline = performance.now() + this.options.connectTimeout;
    const left = () => Math.max(1, deadline - performance.now());
    let session: LeaseSession | undefined;
    try {
      session = await this.grantBy(deadline);
      await checkAccess(this.rpc, keyRoots(this.options.prefix), left());
    } catch (err) {
      this.shuttingDown = true;
      // Briefly: a start that failed mostly failed to reach etcd, and must not wait out a shutdown's time for it.
      const until = this.revokeDeadline(performance.now());
      await Promise.all([session?.revoke(until), this.orphans.revokeNow(until)]);
      await this.watches.close();
      this.connection.close();
      if (!(err instanceof EtcdUnavailableError)) throw err;
      throw new EtcdUnavailableError(
        `Could not start an etcd session within ${this.options.connectTimeout} ms: ${err.problem}`,
        this.rpc.endpoints,
        { cause: err },
      );
    }
    this.adopt(session);
    this.logger.log(`Session granted: lease ${session.hex}, ttl ${session.ttl}s, identity '${this.options.identity}'`);
  }

  /**
   * Nest lifecycle hook: tells of the session just after bootstrap, not at grant: `@nestjs/event-emitter` wires
   * `@OnEvent` methods in its own bootstrap hook, which may run after ours.
   */
  onApplicationBootstrap(): void {
    const session = this.lease;
    if (!session) return;
    setImmediate(() => this.events.emit({ type: EtcdLockEventName.SessionGranted, leaseId: session.hex, ttl: session.ttl }));
  }

  /**
   * @internal Shutdown has begun (the first shutdown hook to run calls this): no session is granted from now on, a
   * session that ends is no longer an error, and the hand-over must end by the deadline returned (a
   * `performance.now()` time, `shutdownTimeout` after the first call).
   */
  beginShutdown(): number {
    this.shuttingDown = true;
    clearTimeout(this.regrantTimer);
    this.shutdownDeadline ??= performance.now() + this.options.shutdownTimeout;
    return this.shutdownDeadline;
  }

  /** Nest lifecycle hook: shutdown begins (see `beginShutdown`). */
  beforeApplicationShutdown(): void {
    this.beginShutdown();
  }

  /**
   * Nest lifecycle hook: revokes the lease: every lock and leadership is handed over at once. The revoke is sent
   * again until etcd answers, up to the shutdown deadline (or `REVOKE_AT_LEAST_MS` when the calls used it all): an
   * etcd that does not answer by then leaves the lease to expire after its TTL, and says so.
   */
  async onApplicationShutdown(): Promise<void> {
    const until = this.revokeDeadline(this.beginShutdown());
    const session = this.lease;
    this.lease = undefined;
    // Every hold on the session ends now (the revoke ends the session first), whether etcd answers or not.
    const [revoked] = await Promise.all([
      session?.revoke(until),
      // A grant under way brings a lease of its own, which it revokes itself once shutdown has begun.
      this.regranting && withTimeout(this.regranting, Math.max(1, until - performance.now()), () => new Error()).catch(() => undefined),
      this.orphans.revokeNow(until),
    ]);
    if (revoked === true) this.logger.log(`Session lease ${session?.hex} revoked`);
    if (revoked === false) {
      this.logger.warn(`etcd did not answer the revoke of lease ${session?.hex} within shutdownTimeout; it expires in ${session?.ttl}s`);
    }
    await this.watches.close();
    this.connection.close();
  }

  /** @internal The live session, or `EtcdUnavailableError` when there is none right now (we never fail open). */
  current(): LeaseSession {
    const session = this.lease;
    if (session?.alive) return session;
    throw new EtcdUnavailableError(
      this.shuttingDown
        ? 'The etcd session has ended: the application is shutting down'
        : 'No live etcd session: the lease was lost and a new one is not granted yet',
      this.rpc.endpoints,
    );
  }

  /** The state of this instance's session, from local state (no etcd request): for health checks. */
  status(): SessionStatus {
    const session = this.lease;
    return {
      alive: session?.alive ?? false,
      leaseId: session?.hex ?? null,
      ttl: this.options.ttl,
      remainingMs: session ? Math.round(session.remainingMs) : 0,
      identity: this.options.identity,
    };
  }

  /** @internal The session if there is one, live or not (for status reporting). */
  peek(): LeaseSession | undefined {
    return this.lease;
  }

  /** @internal Calls `listener` with every newly granted session (after a loss). */
  onSession(listener: (session: LeaseSession) => void): () => void {
    this.sessionListeners.add(listener);
    return () => this.sessionListeners.delete(listener);
  }

  /** @internal The live session, or the next one granted; undefined if `signal` aborts first. */
  nextSession(signal: AbortSignal): Promise<LeaseSession | undefined> {
    if (this.lease?.alive) return Promise.resolve(this.lease);
    return settled<LeaseSession | undefined>((settle) => {
      settle.onEnd(this.onSession((session) => settle.resolve(session)));
      settle.onEnd(onAbort(signal, () => settle.resolve(undefined)));
    });
  }

  /** When revokes at shutdown give up: `deadline`, but at least `REVOKE_AT_LEAST_MS` from now. */
  private revokeDeadline(deadline: number): number {
    return Math.max(performance.now() + REVOKE_AT_LEAST_MS, deadline);
  }

  private adopt(session: LeaseSession): void {
    this.lease = session;
    session.onEnd((reason) => this.onSessionEnd(session, reason));
  }

  private onSessionEnd(session: LeaseSession, reason: SessionEndReason): void {
    if (reason === 'revoked' || reason === 'closed') return;
    if (this.shuttingDown) {
      // Not an outage: the instance is going away, and nothing is granted any more.
      this.logger.log(`Session lease ${session.hex} ended during shutdown (${reason})`);
      return;
    }
    this.logger.error(`Session lease ${session.hex} lost (${reason}): every lock and leadership on it has ended`);
    this.events.emit({ type: EtcdLockEventName.SessionLost, leaseId: session.hex, reason });
    // The lease may still exist on the server (we gave up on our own deadline): revoke it once etcd answers,
    // so its keys do not block others until it expires.
    this.orphans.add(session.id, session.ttl * 1000 + 2000, true);
    this.scheduleRegrant(0);
  }

  /**
   * Grants a lease with an id we choose. If the request fails, it may still reach etcd later (a partition
   * holding packets back) and create a lease we never heard of: keep revoking that id until it would have
   * expired anyway, and once more at shutdown.
   */
  private async grant(timeoutMs = this.options.connectTimeout): Promise<LeaseSession> {
    const id = randomLeaseId();
    try {
      return await LeaseSession.grant(this.rpc, id, this.options.ttl, timeoutMs, this.options.clock);
    } catch (err) {
      // Until a grant arriving late would have expired anyway.
      this.orphans.add(id, this.options.requestTimeout + this.options.ttl * 1000 + 1000, false);
      throw err;
    }
  }

  /**
   * Grants, retrying transport failures with backoff until `deadline` (a `performance.now()` time). Throws the
   * most telling failure: a later "circuit breaker is open" would hide why the host failed (a TLS error, say).
   */
  private async grantBy(deadline: number): Promise<LeaseSession> {
    let telling: unknown;
    const backoff = new Backoff(REGRANT_MIN_MS, REGRANT_MAX_MS);
    for (;;) {
      const delay = backoff.next();
      try {
        return await this.grant(Math.max(1, deadline - performance.now()));
      } catch (err) {
        if (!(err instanceof EtcdUnavailableError)) throw err;
        if (!isBrokenCircuitError(err.cause) || telling === undefined) telling = err;
        if (deadline - performance.now() < delay) throw telling;
        await sleep(delay);
      }
    }
  }

  private scheduleRegrant(delay: number): void {
    if (this.shuttingDown) return;
    this.regrantTimer = setTimeout(() => {
      this.regranting = this.regrant().finally(() => (this.regranting = undefined));
    }, delay);
    this.regrantTimer.unref();
  }

  private async regrant(): Promise<void> {
    try {
      const session = await this.grant();
      if (this.shuttingDown) {
        // Shutdown began while this grant was under way: it waits for us, so revoke before the client closes.
        await session.revoke(this.revokeDeadline(this.shutdownDeadline ?? performance.now()));
        return;
      }
      this.regrantBackoff.reset();
      this.outage.reset();
      this.adopt(session);
      this.logger.log(`Session renewed: new lease ${session.hex}`);
      this.events.emit({ type: EtcdLockEventName.SessionRenewed, leaseId: session.hex, ttl: session.ttl });
      for (const listener of [...this.sessionListeners]) listener(session);
    } catch (err) {
      this.outage.report(() => `etcd unreachable, retrying to grant a session: ${messageOf(err)}`);
      this.scheduleRegrant(this.regrantBackoff.next());
    }
  }
}
