import type { Clock } from '../clock/clock.js';
import { InvalidArgumentError } from '../errors.js';
import { nameProblem } from '../util/validation.js';
import { WaitSignal } from '../util/wait-signal.js';
import type { Lock } from './lock.interface.js';

/** Several locks held together (`acquireAll`): one signal for all, one release for all. */
export interface MultiLock {
  /** The locks, in the order they were taken (the names sorted). */
  readonly locks: readonly Lock[];
  /** Aborts as soon as any of the locks is lost (with that lock's reason). */
  readonly signal: AbortSignal;
  /** Releases every lock (in reverse order); resolves once all are released. */
  release(): Promise<void>;
  /** `await using locks = await service.acquireAll(…)` releases them at the end of the block. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The names of an `acquireAll`, checked, without duplicates, in the one canonical order every caller uses. */
export function canonicalNames(names: unknown): string[] {
  if (!Array.isArray(names) || names.length === 0) {
    throw new InvalidArgumentError(
      'names',
      `must be a non-empty array of lock names, got ${Array.isArray(names) ? 'an empty array' : typeof names}`,
    );
  }
  for (const [i, name] of names.entries()) {
    const problem = nameProblem(name);
    if (problem) throw new InvalidArgumentError(`names[${i}]`, problem);
  }
  const unique = new Set(names as string[]);
  if (unique.size !== names.length) throw new InvalidArgumentError('names', 'must not name a lock twice');
  // Code-unit order, the same in every process: two callers wanting overlapping sets always meet at the lowest
  // common name first, so neither can hold one the other waits for while waiting for one the other holds.
  return [...unique].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Takes every lock in canonical order, all or nothing: one `timeout` for the whole (a `LockTimeoutError` naming
 * the set), and on any failure the locks already taken are released before the rejection.
 */
export async function acquireAll(
  names: readonly string[],
  options: { timeout?: number; signal?: AbortSignal } | undefined,
  clock: Clock,
  acquire: (name: string, signal: AbortSignal | undefined) => Promise<Lock>,
): Promise<MultiLock> {
  const wait = new WaitSignal(names.join(', '), options?.timeout, options?.signal, clock);
  const locks: Lock[] = [];
  try {
    for (const name of names) locks.push(await acquire(name, wait.signal));
  } catch (err) {
    await releaseAll(locks);
    throw err;
  } finally {
    wait.dispose();
  }
  const signal = AbortSignal.any(locks.map((l) => l.signal));
  let releasing: Promise<void> | undefined;
  const release = () => (releasing ??= releaseAll(locks));
  return { locks, signal, release, [Symbol.asyncDispose]: release };
}

async function releaseAll(locks: readonly Lock[]): Promise<void> {
  const failures: unknown[] = [];
  for (const lock of [...locks].reverse()) {
    try {
      await lock.release();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw failures[0];
}
