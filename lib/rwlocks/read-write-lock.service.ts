import { Injectable } from '@nestjs/common';
import { holdContext } from '../locks/hold-context.js';
import { assertMaxHold, HoldPath } from '../locks/hold-path.js';
import type { QueueSnapshot } from '../inventory/queue-inspect.js';
import { HoldPaths } from '../locks/hold-paths.js';
import type { Lock } from '../locks/lock.interface.js';
import type { AcquireOptions as LockAcquireOptions, TryAcquireOptions as LockTryAcquireOptions } from '../locks/lock.service.js';

/** Options of `acquireRead`, `acquireWrite`, `withRead` and `withWrite`: a lock's, without reentrancy. */
export type ReadWriteAcquireOptions = Omit<LockAcquireOptions, 'reentrant'>;
/** Options of `tryAcquireRead` and `tryAcquireWrite`. */
export type ReadWriteTryAcquireOptions = Omit<LockTryAcquireOptions, 'reentrant'>;
type AcquireOptions = ReadWriteAcquireOptions;
type TryAcquireOptions = ReadWriteTryAcquireOptions;
import type { Contender } from '../queue/contender.js';
import { assertName, assertOptions } from '../util/validation.js';

type Mode = 'read' | 'write';

/**
 * Read/write locks on etcd, in the layout of etcd's Go `recipes.RWMutex`: under `<prefix>rwlock/<name>/`, a reader
 * puts `read/<lease hex>-<n>` and a writer `write/<lease hex>-<n>`, on the instance's session lease. Arrival order
 * is create order: a reader holds once no writer key created before it exists; a writer once no key at all was
 * created before it. So readers share, a writer excludes everyone, and a reader that arrives after a waiting
 * writer waits for it (writers are never starved). Waiting watches deletions, never polls.
 *
 * Fencing tokens are create revisions, one total order over readers and writers: a writer's is greater than every
 * earlier holder's. A reader's token R promises that every writer with a token below R has released, and that no
 * writer with a token above R holds until this reader releases: what was written under tokens below R is what it
 * reads. A reader's `fencedTxn()` commits only while it still holds its read lock.
 */
@Injectable()
export class ReadWriteLockService {
  private sequence = 0;
  private readonly path: HoldPath;

  /** @internal Nest constructs it. */
  constructor(paths: HoldPaths) {
    this.path = paths.for('rwlock', (name) => `Read/write lock '${name}'`);
  }

  /** Waits until this caller reads: no writer before it holds or waits. Timeout and abort leave no key. */
  acquireRead(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.acquire('read', name, options);
  }

  /** Waits until this caller writes: everyone before it, readers and writers, has released. */
  acquireWrite(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.acquire('write', name, options);
  }

  /** Reads now if no writer holds or waits, else `null` (nothing left in etcd). */
  tryAcquireRead(name: string, options?: TryAcquireOptions): Promise<Lock | null> {
    return this.tryAcquire('read', name, options);
  }

  /** Writes now if nobody holds or waits, else `null` (nothing left in etcd). */
  tryAcquireWrite(name: string, options?: TryAcquireOptions): Promise<Lock | null> {
    return this.tryAcquire('write', name, options);
  }

  /** Holds a read lock while `fn(lock)` runs (`current()` returns it there), and releases it in every case. */
  withRead<T>(name: string, fn: (lock: Lock) => T | Promise<T>, options?: AcquireOptions): Promise<T> {
    return this.with('read', name, fn, options);
  }

  /** Holds the write lock while `fn(lock)` runs, and releases it in every case. */
  withWrite<T>(name: string, fn: (lock: Lock) => T | Promise<T>, options?: AcquireOptions): Promise<T> {
    return this.with('write', name, fn, options);
  }

  /** Who holds the name (by mode) and who waits, in order, with their values, tokens and leases: one etcd read. */
  inspect(name: string): Promise<QueueSnapshot> {
    assertName(name);
    return this.path.inspect(name);
  }

  /** The read or write lock held by the `withRead` or `withWrite` callback running now, if any. */
  static current(): Lock | undefined {
    return holdContext('rwlock').getStore();
  }

  /** Same as the static `ReadWriteLockService.current()`. */
  current(): Lock | undefined {
    return holdContext('rwlock').getStore();
  }

  private async acquire(mode: Mode, name: string, options: AcquireOptions | undefined): Promise<Lock> {
    const value = this.check(name, options, ['timeout', 'signal', 'value', 'maxHoldMs']);
    this.path.checkWait(options);
    const operation = mode === 'read' ? 'acquire_read' : 'acquire_write';
    return this.path.acquire(name, operation, options, () => HoldPath.alone(this.contender(mode, name, value)));
  }

  private async tryAcquire(mode: Mode, name: string, options: TryAcquireOptions | undefined): Promise<Lock | null> {
    const value = this.check(name, options, ['value', 'maxHoldMs']);
    assertMaxHold(options?.maxHoldMs);
    const operation = mode === 'read' ? 'try_acquire_read' : 'try_acquire_write';
    return this.path.tryAcquire(name, operation, () => HoldPath.alone(this.contender(mode, name, value)), true, options?.maxHoldMs);
  }

  private with<T>(mode: Mode, name: string, fn: (lock: Lock) => T | Promise<T>, options: AcquireOptions | undefined): Promise<T> {
    return this.path.with(fn, () => this.acquire(mode, name, options));
  }

  private check(name: string, options: { value?: unknown } | undefined, known: string[]): string {
    assertName(name);
    assertOptions(options, 'options', known);
    return this.path.valueOf(options);
  }

  private contender(mode: Mode, name: string, value: string): Contender {
    const prefix = this.path.prefixOf(name);
    const sequence = ++this.sequence;
    return this.path.contender(name, value, {
      keyName: (leaseHex) => `${mode}/${leaseHex}-${sequence}`,
      // A reader waits for the writers before it; a writer for everyone before it.
      waitPrefix: mode === 'read' ? `${prefix}write/` : undefined,
    });
  }
}
