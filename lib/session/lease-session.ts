import { randomBytes } from 'node:crypto';
import type { ILeaseKeepAliveResponse } from 'etcd3';
import type { KeepAliveStream } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { leaseHex } from '../etcd/keys.js';
import type { Clock, ClockTimer } from '../clock/clock.js';
import { revokeUntil } from './lease-revoke.js';

/** Why a session ended. `revoked` is our own clean shutdown; every other reason is a loss. */
export type SessionEndReason = 'revoked' | 'deadline-passed' | 'lease-expired' | 'closed';

/**
 * Told once when a session ends: a function, or an object with a `sessionEnded` method (a contender registers
 * itself: with one contender per held lock, a closure each would cost about 100 bytes per lock).
 */
export type SessionEndListener = ((reason: SessionEndReason) => void) | { sessionEnded(reason: SessionEndReason): void };

function tell(listener: SessionEndListener, reason: SessionEndReason): void {
  if (typeof listener === 'function') listener(reason);
  else listener.sessionEnded(reason);
}

/**
 * One granted etcd lease, kept alive over one keepalive stream, with a local deadline on the monotonic
 * clock. The deadline is computed from when a keepalive was *sent* (etcd extends the lease when it receives
 * it, never earlier), minus a safety margin for clock drift and timer lateness, so we declare the lease lost
 * before etcd can expire it and hand our keys to someone else.
 */
export class LeaseSession {
  readonly hex: string;
  private deadline: number;
  private endReason: SessionEndReason | undefined;
  private stream: KeepAliveStream | undefined;
  private readonly sentAt: number[] = [];
  private keepaliveTimer: ClockTimer | undefined;
  private deadlineTimer: ClockTimer | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly reconnectBackoff = new Backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS);
  private readonly endListeners = new Set<SessionEndListener>();
  private readonly renewListeners = new Set<() => void>();

  private constructor(
    private readonly rpc: EtcdPort,
    readonly id: string,
    readonly ttl: number,
    /** Revision of the store when the lease was granted. */
    readonly grantRevision: bigint,
    grantSentAt: number,
    private readonly clock: Clock,
  ) {
    this.hex = leaseHex(id);
    this.deadline = grantSentAt + ttl * 1000 - safetyMargin(ttl);
  }

  /**
   * Grants lease `id` (chosen by us, so that a grant whose answer is lost can still be revoked) and starts
   * keeping it alive. Rejects with `EtcdUnavailableError` after `timeoutMs`.
   */
  static async grant(rpc: EtcdPort, id: string, ttl: number, timeoutMs: number, clock: Clock): Promise<LeaseSession> {
    const sentAt = clock.monotonic();
    const res = await rpc.leaseGrant(id, ttl, timeoutMs);
    const session = new LeaseSession(rpc, res.ID, Number(res.TTL), BigInt(res.header.revision), sentAt, clock);
    session.start();
    return session;
  }

  /** True until the local deadline passes or the lease ends; checked synchronously against the clock. */
  get alive(): boolean {
    return this.endReason === undefined && this.clock.monotonic() < this.deadline;
  }

  /** Milliseconds until the local deadline (0 once the session has ended). */
  get remainingMs(): number {
    return this.endReason === undefined ? Math.max(0, this.deadline - this.clock.monotonic()) : 0;
  }

  /** Calls `listener` once when the session ends for any reason. Returns an unsubscribe function. */
  onEnd(listener: SessionEndListener): () => void {
    if (this.endReason !== undefined) {
      const reason = this.endReason;
      queueMicrotask(() => tell(listener, reason));
      return () => {};
    }
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  /** Stops calling `listener` (given to `onEnd`) when the session ends. */
  offEnd(listener: SessionEndListener): void {
    this.endListeners.delete(listener);
  }

  /** Calls `listener` whenever a keepalive is acknowledged. */
  onRenew(listener: () => void): () => void {
    this.renewListeners.add(listener);
    return () => this.renewListeners.delete(listener);
  }

  /**
   * Ends the session and revokes the lease, so every key on it is deleted at once: tried again until etcd answers
   * or `until` (a `performance.now()` time) comes. True if etcd answered.
   */
  revoke(until: number): Promise<boolean> {
    this.end('revoked');
    return revokeUntil(this.rpc, this.id, until);
  }

  /**
   * Asks etcd now whether the lease lives (one keepalive, sent at once): resolves true when that keepalive is
   * acknowledged, false once the session ends (a revoked or expired lease is answered with TTL 0), and undefined
   * if neither happens within `timeoutMs`.
   */
  checkNow(timeoutMs: number): Promise<boolean | undefined> {
    if (this.endReason !== undefined) return Promise.resolve(false);
    return new Promise((resolve) => {
      // Acknowledgements come in order: skip those of keepalives sent before ours.
      let earlier = this.sentAt.length;
      const done = (alive: boolean | undefined) => {
        timer.cancel();
        offRenew();
        offEnd();
        resolve(alive);
      };
      const offRenew = this.onRenew(() => {
        if (earlier-- === 0) done(true);
      });
      const offEnd = this.onEnd(() => done(false));
      const timer = this.clock.setTimer(() => done(undefined), timeoutMs, { unref: true });
      this.sendKeepalive();
    });
  }

  /** Ends the session without telling etcd (the lease then expires after its TTL). */
  close(reason: SessionEndReason = 'closed'): void {
    this.end(reason);
  }

  private start(): void {
    this.armDeadline();
    this.openStream();
    this.scheduleKeepalive();
  }

  /** A keepalive every third of the TTL, whatever their answers. */
  private scheduleKeepalive(): void {
    this.keepaliveTimer = this.clock.setTimer(
      () => {
        this.sendKeepalive();
        if (this.endReason === undefined) this.scheduleKeepalive();
      },
      (this.ttl * 1000) / 3,
      { unref: true },
    );
  }

  private openStream(): void {
    this.reconnectTimer = undefined;
    this.rpc.keepAlive().then(
      (stream) => {
        if (this.endReason !== undefined) {
          stream.end();
          return;
        }
        this.stream = stream;
        this.sentAt.length = 0;
        stream.on('data', (res) => this.onKeepaliveResponse(res));
        stream.on('error', () => this.onStreamBroken(stream));
        stream.on('end', () => this.onStreamBroken(stream));
        this.sendKeepalive();
      },
      () => this.scheduleReconnect(),
    );
  }

  private sendKeepalive(): void {
    if (!this.stream || this.endReason !== undefined) return;
    this.sentAt.push(this.clock.monotonic());
    this.stream.write({ ID: this.id });
  }

  private onKeepaliveResponse(res: ILeaseKeepAliveResponse): void {
    const sentAt = this.sentAt.shift();
    if (this.endReason !== undefined) return;
    if (res.TTL === '0') {
      this.end('lease-expired');
      return;
    }
    this.reconnectBackoff.reset();
    if (sentAt !== undefined) {
      this.deadline = Math.max(this.deadline, sentAt + Number(res.TTL) * 1000 - safetyMargin(this.ttl));
      this.armDeadline();
    }
    for (const listener of [...this.renewListeners]) listener();
  }

  private onStreamBroken(stream: KeepAliveStream): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    this.sentAt.length = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.endReason !== undefined || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => this.openStream(), this.reconnectBackoff.next());
    this.reconnectTimer.unref();
  }

  private armDeadline(): void {
    this.deadlineTimer?.cancel();
    this.deadlineTimer = this.clock.setTimer(
      () => {
        if (this.endReason === undefined && this.clock.monotonic() >= this.deadline) this.end('deadline-passed');
        else this.armDeadline();
      },
      Math.max(0, this.deadline - this.clock.monotonic()),
      { unref: true },
    );
  }

  private end(reason: SessionEndReason): void {
    if (this.endReason !== undefined) return;
    this.endReason = reason;
    this.keepaliveTimer?.cancel();
    this.deadlineTimer?.cancel();
    clearTimeout(this.reconnectTimer);
    this.stream?.end();
    this.stream = undefined;
    const listeners = [...this.endListeners];
    this.endListeners.clear();
    this.renewListeners.clear();
    for (const listener of listeners) tell(listener, reason);
  }
}

const RECONNECT_MIN_MS = 100;

/** A random positive 63-bit lease id, as a decimal string. */
export function randomLeaseId(): string {
  const bytes = randomBytes(8);
  bytes[0] &= 0x7f;
  const id = bytes.readBigUInt64BE();
  return (id === 0n ? 1n : id).toString();
}
const RECONNECT_MAX_MS = 1000;

/** 10% of the TTL, between 250 ms and 2 s: covers timer lateness and clock drift between us and etcd. */
export function safetyMargin(ttlSeconds: number): number {
  return Math.min(2000, Math.max(250, ttlSeconds * 100));
}
