import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { type Observable, Subject } from 'rxjs';
import type { LockLossReason } from './errors.js';

/** Event names, also used on `@nestjs/event-emitter`'s EventEmitter2 when the app has it. */
export const EtcdLockEventName = {
  SessionGranted: 'etcd-lock.session.granted',
  SessionLost: 'etcd-lock.session.lost',
  SessionRenewed: 'etcd-lock.session.renewed',
  LeadershipChanged: 'etcd-lock.leadership.changed',
  LockLost: 'etcd-lock.lock.lost',
} as const;

/** What happened to this instance's session, its leaderships and its locks, as it happened (no polling). */
export type EtcdLockEvent =
  /** The first session, at start-up. */
  | { readonly type: typeof EtcdLockEventName.SessionGranted; readonly leaseId: string; readonly ttl: number }
  /** The session ended without our asking (deadline passed, lease expired or revoked from outside). */
  | { readonly type: typeof EtcdLockEventName.SessionLost; readonly leaseId: string; readonly reason: string }
  /** A new session after a loss: new locks and campaigns use it. */
  | { readonly type: typeof EtcdLockEventName.SessionRenewed; readonly leaseId: string; readonly ttl: number }
  | { readonly type: typeof EtcdLockEventName.LeadershipChanged; readonly election: string; readonly leader: boolean }
  /** A lock held through `LockService` (or by a `@Singleton` call) was lost before its release. */
  | {
      readonly type: typeof EtcdLockEventName.LockLost;
      readonly name: string;
      readonly reason: LockLossReason;
      readonly fencingToken: bigint;
    };

interface EventEmitterLike {
  emit(event: string, payload: unknown): unknown;
}

/**
 * The library's events: subscribe to `events$`, or, with `@nestjs/event-emitter` in the app, use `@OnEvent` with
 * an `EtcdLockEventName`. Emitting costs nothing when nobody listens.
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

  /** Last of the shutdown hooks: leadership ending at shutdown is still told. */
  onApplicationShutdown(): void {
    this.subject.complete();
  }

  /** @internal */
  emit(event: EtcdLockEvent): void {
    this.subject.next(event);
    try {
      this.emitter?.emit(event.type, event);
    } catch (err) {
      // A listener's error must not break the library's own state handling.
      new Logger('EtcdLock').error(`An ${event.type} listener threw: ${err instanceof Error ? err.message : err}`);
    }
  }
}
