import { LockTimeoutError } from '../errors.js';
import { type Clock, type ClockTimer, systemClock } from '../clock/clock.js';

/**
 * One AbortSignal for "the caller's signal aborted, or the timeout passed", whose timeout reason is a
 * `LockTimeoutError`; none at all (`signal` undefined) when there is neither, as in most acquires. Call
 * `dispose()` when done so no timer or listener outlives the call.
 */
export class WaitSignal {
  private readonly controller: AbortController | undefined;
  private readonly timer: ClockTimer | undefined;
  private readonly stopListening: (() => void) | undefined;

  /** The timeout runs on `clock` (the module's: a `ManualClock` in tests). */
  constructor(name: string, timeoutMs: number | undefined, parent: AbortSignal | undefined, clock: Clock = systemClock) {
    if (!parent && timeoutMs === undefined) return;
    const controller = new AbortController();
    this.controller = controller;
    this.stopListening = onAbort(parent, (reason) => controller.abort(reason));
    if (timeoutMs !== undefined && !controller.signal.aborted) {
      this.timer = clock.setTimer(() => controller.abort(new LockTimeoutError(name, timeoutMs)), timeoutMs);
    }
  }

  get signal(): AbortSignal | undefined {
    return this.controller?.signal;
  }

  dispose(): void {
    this.timer?.cancel();
    this.stopListening?.();
  }
}

/**
 * Calls `fn(reason)` once when `signal` aborts: at once if it already has (an `abort` listener added to an aborted
 * signal never fires). Returns the function that stops listening.
 */
export function onAbort(signal: AbortSignal | undefined, fn: (reason: unknown) => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    fn(signal.reason);
    return () => undefined;
  }
  const listener = () => fn(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/** Resolves with the reason when `signal` aborts, now or later. */
export function whenAborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => onAbort(signal, resolve));
}

/** `promise`, or a rejection with `onTimeout()` after `ms`; the timer never outlives the race. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms` without keeping the process alive: for background retries that must not delay exit. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Resolves after `ms`, or rejects with `signal.reason` as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      stopListening();
      resolve();
    }, ms);
    const stopListening = onAbort(signal, (reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}
