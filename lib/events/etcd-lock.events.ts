import type { LeadershipLossReason } from '../errors.js';
import { type Channel, channel } from 'node:diagnostics_channel';
import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { type Observable, Subject } from 'rxjs';
import type { LockLossReason } from '../errors.js';
import type { JobRun } from '../scheduling/job-record.js';
import { messageOf } from '../util/error-message.js';

/** Event names, also used on `@nestjs/event-emitter`'s EventEmitter2 when the app has it. */
export const EtcdLockEventName = {
  /** The first session, at start-up. */
  SessionGranted: 'etcd-lock.session.granted',
  /** The session ended without our asking. */
  SessionLost: 'etcd-lock.session.lost',
  /** A new session after a loss. */
  SessionRenewed: 'etcd-lock.session.renewed',
  /** This instance became or stopped being the leader of an election. */
  LeadershipChanged: 'etcd-lock.leadership.changed',
  /** A held lock was lost before its release. */
  LockLost: 'etcd-lock.lock.lost',
  /** This instance's shards of a sharding group changed. */
  ShardsChanged: 'etcd-lock.shards.changed',
  /** This instance started a run of a scheduled job. */
  JobRunStarted: 'etcd-lock.job.started',
  /** A run of a scheduled job on this instance ended (or one whose replica died was found abandoned). */
  JobRunEnded: 'etcd-lock.job.ended',
} as const;

/** The first session, at start-up; or a new one after a loss (`SessionRenewed`). */
export interface SessionGrantedEvent {
  /** `SessionGranted` or `SessionRenewed`. */
  readonly type: typeof EtcdLockEventName.SessionGranted | typeof EtcdLockEventName.SessionRenewed;
  /** The lease id in hex, as in our etcd keys. */
  readonly leaseId: string;
  /** The granted TTL in seconds. */
  readonly ttl: number;
}

/** The session ended without our asking (deadline passed, lease expired or revoked from outside). */
export interface SessionLostEvent {
  /** `SessionLost`. */
  readonly type: typeof EtcdLockEventName.SessionLost;
  /** The lost lease's id in hex. */
  readonly leaseId: string;
  /** How it ended. */
  readonly reason: SessionLossReason;
}

/**
 * How a session ended without our asking: our local deadline passed with no renewal (etcd unreachable, a pause),
 * or etcd said the lease was gone (expired, or revoked from outside).
 */
export type SessionLossReason = 'deadline-passed' | 'lease-expired';

/** The kinds of hold a `LockLost` event can be about (terms and shards have events of their own). */
export type HoldKind = 'lock' | 'semaphore' | 'rwlock' | 'job';

/** This instance's leadership in one election changed. */
export interface LeadershipChangedEvent {
  /** `LeadershipChanged`. */
  readonly type: typeof EtcdLockEventName.LeadershipChanged;
  /** The election's name. */
  readonly election: string;
  /** Whether this instance leads it now. */
  readonly leader: boolean;
  /** The fencing token of the term that began (or, when `leader` is false, ended). */
  readonly fencingToken: bigint | undefined;
  /** When `leader` is false: how the term ended (`transferred` by `transfer` or to a preferred leader, …). */
  readonly reason?: LeadershipLossReason;
}

/**
 * A hold was lost before its release: a lock (through `LockService` or a `@Singleton` call), a semaphore permit
 * (`SemaphoreService`, `@MaxConcurrent`), or a read or write lock.
 */
export interface LockLostEvent {
  /** `LockLost`. */
  readonly type: typeof EtcdLockEventName.LockLost;
  /** What was held: lock `x`, semaphore `x` and read/write lock `x` are different names. */
  readonly kind: HoldKind;
  /** The lock's (or semaphore's) name. */
  readonly name: string;
  /** How it was lost. */
  readonly reason: LockLossReason;
  /** The lost lock's fencing token. */
  readonly fencingToken: bigint;
}

/** This instance's shards of a sharding group changed (taken, handed over, or lost). */
export interface ShardsChangedEvent {
  /** `ShardsChanged`. */
  readonly type: typeof EtcdLockEventName.ShardsChanged;
  /** The sharding group. */
  readonly group: string;
  /** The shards this instance owns now, ascending. */
  readonly shards: readonly number[];
  /** Shards it owns now and did not before. */
  readonly gained: readonly number[];
  /** Shards it owned before and does not now. */
  readonly lost: readonly number[];
}

/** A run of a scheduled job started here, or ended (here, or abandoned elsewhere and found so here). */
export interface JobRunEvent {
  /** `JobRunStarted` or `JobRunEnded`. */
  readonly type: typeof EtcdLockEventName.JobRunStarted | typeof EtcdLockEventName.JobRunEnded;
  /** The run, as the history records it (`outcome` is `running` when it starts). */
  readonly run: JobRun;
}

/** What happened to this instance's session, its leaderships, locks, shards and job runs, as it happened. */
export type EtcdLockEvent =
  | SessionGrantedEvent
  | SessionLostEvent
  | LeadershipChangedEvent
  | LockLostEvent
  | ShardsChangedEvent
  | JobRunEvent;

/**
 * The `node:diagnostics_channel` name each event is also published on: `nestjs-etcd-lock:` and the event's name
 * without its `etcd-lock.` prefix (`nestjs-etcd-lock:lock.lost`), with the event object as the message.
 */
export function diagnosticsChannelOf(type: EtcdLockEvent['type']): string {
  return `nestjs-etcd-lock:${type.slice('etcd-lock.'.length)}`;
}

const channels = new Map<string, Channel>(Object.values(EtcdLockEventName).map((type) => [type, channel(diagnosticsChannelOf(type))]));

interface EventEmitterLike {
  emit(event: string, payload: unknown): unknown;
}

/**
 * The library's events: subscribe to `events$`; with `@nestjs/event-emitter` in the app, use `@OnEvent` with an
 * `EtcdLockEventName`; from an APM agent, subscribe to the `node:diagnostics_channel` named by
 * `diagnosticsChannelOf`. Emitting costs nothing when nobody listens.
 */
@Injectable()
export class EtcdLockEvents implements OnModuleInit, OnApplicationShutdown {
  private readonly subject = new Subject<EtcdLockEvent>();
  private emitter: EventEmitterLike | undefined;

  constructor(private readonly moduleRef: ModuleRef) {}

  /** Every event from now on. */
  get events$(): Observable<EtcdLockEvent> {
    return this.subject.asObservable();
  }

  /** Nest lifecycle hook. */
  async onModuleInit(): Promise<void> {
    // Optional peer: look it up only if the app has it installed and registered.
    const module = await import('@nestjs/event-emitter').catch(() => undefined);
    if (!module) return;
    try {
      this.emitter = this.moduleRef.get(module.EventEmitter2, { strict: false });
    } catch {
      // Installed but EventEmitterModule not imported: events$ only.
    }
  }

  /** Nest lifecycle hook: last of the shutdown hooks: leadership ending at shutdown is still told. */
  onApplicationShutdown(): void {
    this.subject.complete();
  }

  /** @internal */
  emit(event: EtcdLockEvent): void {
    this.subject.next(event);
    const diagnostics = channels.get(event.type);
    if (diagnostics?.hasSubscribers) diagnostics.publish(event);
    try {
      this.emitter?.emit(event.type, event);
    } catch (err) {
      // A listener's error must not break the library's own state handling.
      new Logger('EtcdLock').error(`An ${event.type} listener threw: ${messageOf(err)}`);
    }
  }
}
