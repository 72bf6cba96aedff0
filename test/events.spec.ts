import 'reflect-metadata';
import diagnostics_channel from 'node:diagnostics_channel';
import { Injectable } from '@nestjs/common';
import { EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { filter, firstValueFrom } from 'rxjs';
import {
  type EtcdLockEvent,
  EtcdLockEventName,
  EtcdLockEvents,
  EtcdSessionService,
  LeaderElectionService,
  diagnosticsChannelOf,
  LockService,
  ReadWriteLockService,
  SemaphoreService,
} from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

/** What an app would write: @OnEvent listeners for every event the library emits. */
@Injectable()
class Listener {
  readonly seen: EtcdLockEvent[] = [];
  private wake: (() => void) | undefined;
  @OnEvent('etcd-lock.**')
  onAny(event: EtcdLockEvent) {
    this.seen.push(event);
    this.wake?.();
  }
  /** Resolves once an event of `type` has been seen. */
  async saw(type: EtcdLockEvent['type']): Promise<EtcdLockEvent> {
    for (;;) {
      const found = this.seen.find((e) => e.type === type);
      if (found) return found;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

const next = (events: EtcdLockEvents, type: EtcdLockEvent['type'], election?: string) =>
  firstValueFrom(events.events$.pipe(filter((e) => e.type === type && (!election || ('election' in e && e.election === election)))));

describe('events', () => {
  it('publishes every event on node:diagnostics_channel (nestjs-etcd-lock:<event>), for APM agents with no code in the app', async () => {
    const published: Array<[string, unknown]> = [];
    const names = Object.values(EtcdLockEventName).map(diagnosticsChannelOf);
    expect(names).toEqual([
      'nestjs-etcd-lock:session.granted',
      'nestjs-etcd-lock:session.lost',
      'nestjs-etcd-lock:session.renewed',
      'nestjs-etcd-lock:leadership.changed',
      'nestjs-etcd-lock:lock.lost',
      'nestjs-etcd-lock:shards.changed',
      'nestjs-etcd-lock:job.started',
      'nestjs-etcd-lock:job.ended',
    ]);
    const listeners = names.map((name) => {
      const listener = (message: unknown) => published.push([name, message]);
      diagnostics_channel.subscribe(name, listener);
      return () => diagnostics_channel.unsubscribe(name, listener);
    });
    try {
      const app = await etcd.app({ ttl: 3 });
      await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));
      const lock = await app.get(LockService).acquire('diag');
      const lost = next(app.get(EtcdLockEvents), EtcdLockEventName.LockLost);
      await etcd.client.delete().key(lock.key);
      await lost;
      // The session, the default election's leadership (it campaigns at bootstrap), and the loss.
      expect(published.map(([name]) => name).sort()).toEqual([
        'nestjs-etcd-lock:leadership.changed',
        'nestjs-etcd-lock:lock.lost',
        'nestjs-etcd-lock:session.granted',
      ]);
      expect(published.find(([name]) => name.endsWith('lock.lost'))?.[1]).toEqual({
        type: EtcdLockEventName.LockLost,
        kind: 'lock',
        name: 'diag',
        reason: 'key-deleted',
        fencingToken: lock.fencingToken,
      });
      await lock.release();
    } finally {
      for (const off of listeners) off();
    }
  });

  it('tells session, leadership and lock changes on events$ and on EventEmitter2, without polling', async () => {
    const app = await etcd.app({ ttl: 3 }, [EventEmitterModule.forRoot({ wildcard: true })], [Listener]);
    const events = app.get(EtcdLockEvents);
    const listener = app.get(Listener);
    const session = app.get(EtcdSessionService).status();
    expect(await listener.saw(EtcdLockEventName.SessionGranted)).toEqual({
      type: EtcdLockEventName.SessionGranted,
      leaseId: session.leaseId,
      ttl: 3,
    });

    const elections = app.get(LeaderElectionService);
    const gained = next(events, EtcdLockEventName.LeadershipChanged, 'events');
    await elections.campaign('events');
    const token = elections.term('events')?.fencingToken;
    expect(await gained).toEqual({ type: EtcdLockEventName.LeadershipChanged, election: 'events', leader: true, fencingToken: token });
    const ended = next(events, EtcdLockEventName.LeadershipChanged, 'events');
    await elections.resign('events');
    expect(await ended).toMatchObject({ election: 'events', leader: false, fencingToken: token });

    const lock = await app.get(LockService).acquire('evented');
    const lost = next(events, EtcdLockEventName.LockLost);
    await etcd.client.delete().key(lock.key);
    expect(await lost).toEqual({
      type: EtcdLockEventName.LockLost,
      kind: 'lock',
      name: 'evented',
      reason: 'key-deleted',
      fencingToken: lock.fencingToken,
    });
    await lock.release();

    // The lease revoked from outside: lost (at the next keepalive answer), then a new session.
    const sessionLost = next(events, EtcdLockEventName.SessionLost);
    const renewed = next(events, EtcdLockEventName.SessionRenewed);
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${session.leaseId}`).toString() });
    expect(await sessionLost).toMatchObject({ leaseId: session.leaseId, reason: 'lease-expired' });
    const fresh = await renewed;
    expect(fresh.type === EtcdLockEventName.SessionRenewed && fresh.leaseId).not.toBe(session.leaseId);

    // The same events reached the EventEmitter2 listener, in order (the default election 'leader' aside).
    expect(listener.seen.filter((e) => !('election' in e) || e.election === 'events').map((e) => e.type)).toEqual([
      EtcdLockEventName.SessionGranted,
      EtcdLockEventName.LeadershipChanged,
      EtcdLockEventName.LeadershipChanged,
      EtcdLockEventName.LockLost,
      EtcdLockEventName.SessionLost,
      EtcdLockEventName.SessionRenewed,
    ]);
  });

  it('a lost permit and a lost read/write lock say their kind: the same name is another hold in each', async () => {
    const app = await etcd.app();
    const events = app.get(EtcdLockEvents);
    const permit = await app.get(SemaphoreService).acquire('same', { limit: 2 });
    const writer = await app.get(ReadWriteLockService).acquireWrite('same');
    for (const [hold, kind] of [
      [permit, 'semaphore'],
      [writer, 'rwlock'],
    ] as const) {
      const lost = next(events, EtcdLockEventName.LockLost);
      await etcd.client.delete().key(hold.key);
      expect(await lost).toEqual({
        type: EtcdLockEventName.LockLost,
        kind,
        name: 'same',
        reason: 'key-deleted',
        fencingToken: hold.fencingToken,
      });
      await hold.release();
    }
  });

  it('works without @nestjs/event-emitter registered: events$ only', async () => {
    const app = await etcd.app();
    const events = app.get(EtcdLockEvents);
    const changed = next(events, EtcdLockEventName.LeadershipChanged, 'plain');
    await app.get(LeaderElectionService).campaign('plain');
    expect(await changed).toMatchObject({ election: 'plain', leader: true });
  });
});
