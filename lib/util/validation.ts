import { InvalidArgumentError } from '../errors.js';
import { unprintableIn } from './printable.js';

const MAX_NAME_BYTES = 1024;
const MAX_VALUE_BYTES = 1024 * 1024;

/** The one rule for lock and election names (arguments and the `election` option): what is wrong, if anything. */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${describe(name)}`;
  if (name.length === 0) return 'must not be empty';
  if (name.includes('\0')) return 'must not contain a NUL byte';
  const unprintable = unprintableIn(name);
  // A name is shown by the CLI, in logs and in metrics: it must read as what it is.
  if (unprintable) return `must not contain control or bidirectional-override characters (found ${unprintable})`;
  // 'a' and 'a/b' would share the key range 'lock/a/…' and contend with each other.
  if (name.includes('/')) return `must not contain '/' ('${truncate(name)}'); use ':' to build names`;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `must be at most ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/** Lock and election names: checked before any request so a bad name never reaches etcd. */
export function assertName(name: unknown, argument = 'name'): asserts name is string {
  const problem = nameProblem(name);
  if (problem) throw new InvalidArgumentError(argument, problem);
}

export function assertValue(value: unknown, argument = 'value'): asserts value is string {
  if (typeof value !== 'string') throw new InvalidArgumentError(argument, `must be a string, got ${describe(value)}`);
  if (Buffer.byteLength(value) > MAX_VALUE_BYTES) {
    throw new InvalidArgumentError(argument, `must be at most ${MAX_VALUE_BYTES} bytes (1 MiB)`);
  }
}

/** The longest wait a Node timer can make: a longer delay fires after 1 ms. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * The one rule for durations in milliseconds (arguments and module options): a number from 0 (or above 0) to
 * 2^31−1 (about 24.8 days, the longest a Node timer waits; a longer one would fire at once). What is wrong, if
 * anything.
 */
export function durationProblem(ms: unknown, allowZero = true): string | undefined {
  if (typeof ms !== 'number' || Number.isNaN(ms)) return `must be a number of milliseconds, got ${describe(ms)}`;
  if (!Number.isFinite(ms) || ms < 0 || (ms === 0 && !allowZero)) {
    return `must be a finite number of milliseconds, ${allowZero ? '0 or more' : 'above 0'}, got ${ms}`;
  }
  if (ms > MAX_DURATION_MS) return `must be at most ${MAX_DURATION_MS} ms (about 24.8 days: Node's timers wait no longer), got ${ms}`;
  return undefined;
}

/** A duration argument in milliseconds (see `durationProblem`). */
export function assertDuration(ms: unknown, argument: string): asserts ms is number {
  const problem = durationProblem(ms);
  if (problem) throw new InvalidArgumentError(argument, problem);
}

export function assertSignal(signal: unknown, argument = 'signal'): asserts signal is AbortSignal {
  if (!(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(argument, `must be an AbortSignal, got ${describe(signal)}`);
  }
}

export function assertFunction(fn: unknown, argument: string): asserts fn is (...args: never[]) => unknown {
  if (typeof fn !== 'function') throw new InvalidArgumentError(argument, `must be a function, got ${describe(fn)}`);
}

/** An options bag: `undefined`, or a plain object whose keys are all known. */
export function assertOptions(options: unknown, argument: string, known: readonly string[]): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(argument, `must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(`${argument}.${key}`, `is not a known option (known: ${known.join(', ')})`);
    }
  }
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string '${truncate(value)}'`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

export const MAX_SHARDS = 4096;

/** A sharding group's shard count: an integer from 1 to 4096. */
export function assertShardCount(shards: unknown, argument = 'shards'): asserts shards is number {
  if (typeof shards !== 'number' || !Number.isInteger(shards)) {
    throw new InvalidArgumentError(argument, `must be an integer, got ${describe(shards)}`);
  }
  if (shards < 1 || shards > MAX_SHARDS) {
    throw new InvalidArgumentError(argument, `must be from 1 to ${MAX_SHARDS}, got ${shards}`);
  }
}

export const MAX_SEMAPHORE_LIMIT = 10_000;

/** A semaphore's limit: an integer from 1 to 10,000. */
export function assertLimit(limit: unknown, argument = 'options.limit'): asserts limit is number {
  if (typeof limit !== 'number' || !Number.isInteger(limit)) {
    throw new InvalidArgumentError(argument, `must be an integer number of permits, got ${describe(limit)}`);
  }
  if (limit < 1 || limit > MAX_SEMAPHORE_LIMIT) {
    throw new InvalidArgumentError(argument, `must be from 1 to ${MAX_SEMAPHORE_LIMIT}, got ${limit}`);
  }
}
