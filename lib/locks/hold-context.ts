import { AsyncLocalStorage } from 'node:async_hooks';
import type { HoldKind } from '../events/etcd-lock.events.js';
import type { Lock } from './lock.interface.js';

const contexts: Record<HoldKind, AsyncLocalStorage<Lock>> = {
  lock: new AsyncLocalStorage<Lock>(),
  semaphore: new AsyncLocalStorage<Lock>(),
  rwlock: new AsyncLocalStorage<Lock>(),
  job: new AsyncLocalStorage<Lock>(),
};

/**
 * The hold of each kind whose `with*` callback or guarded method runs now: `LockService.current()` (a `withLock`
 * callback, a `@Singleton` method), `SemaphoreService.current()` (`withPermit`, `@MaxConcurrent`),
 * `ReadWriteLockService.current()` (`withRead`, `withWrite`), `ScheduledJobsService.current()` (a scheduled job's run). One per kind, so a permit taken inside a lock's
 * callback does not hide the lock.
 */
export function holdContext(kind: HoldKind): AsyncLocalStorage<Lock> {
  return contexts[kind];
}

const reentry: Record<HoldKind, AsyncLocalStorage<ReadonlyMap<string, Lock>>> = {
  lock: new AsyncLocalStorage(),
  semaphore: new AsyncLocalStorage(),
  rwlock: new AsyncLocalStorage(),
  job: new AsyncLocalStorage(),
};

/** Every hold of `kind` the running callback is inside, by name (outer ones too): what `reentrant: true` finds. */
export function heldInContext(kind: HoldKind): AsyncLocalStorage<ReadonlyMap<string, Lock>> {
  return reentry[kind];
}
