import type { Logger } from '@nestjs/common';
import type { LockLostError } from '../errors.js';
import { EtcdLockEventName, type EtcdLockEvents, type HoldKind } from '../events/etcd-lock.events.js';
import type { HeldLock } from './held-lock.js';

/**
 * How a hold lost while held is told, for every kind of lock: one line and one `LockLost` event per hold (never
 * one per acquire). At a clean shutdown every hold ends with the session's revoke: expected, so a LOG line, not a
 * warning. `label` names the hold in the line (`Lock 'x'`, `Permit of semaphore 'x'`).
 */
export function lossReporter(logger: Logger, events: EtcdLockEvents, kind: HoldKind, label: (name: string) => string) {
  return (lock: HeldLock, err: LockLostError): void => {
    if (err.reason === 'shutdown') logger.log(`${label(lock.name)} released by the shutdown's revoke, fencing token ${lock.fencingToken}`);
    else logger.warn(`${label(lock.name)} lost (${err.reason}), fencing token ${lock.fencingToken}`);
    events.emit({ type: EtcdLockEventName.LockLost, kind, name: lock.name, reason: err.reason, fencingToken: lock.fencingToken });
  };
}
