import { LockTimeoutError } from './errors.js';

/**
 * One AbortSignal for "the caller's signal aborted, or the timeout passed", whose timeout reason is a
 * `LockTimeoutError`; none at all (`signal` undefined) when there is neither, as in most acquires. Call
 * `dispose()` when done so no timer or listener outlives the call.
 */
export class WaitSignal {
  private readonly controller: AbortController | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    name: string,
    timeoutMs: number | undefined,
    private readonly parent: AbortSignal | undefined,
  ) {
    if (!parent && timeoutMs === undefined) return;
    const controller = new AbortController();
    this.controller = controller;
    if (parent) {
      if (parent.aborted) controller.abort(parent.reason);
      else {
        this.onAbort = () => controller.abort(parent.reason);
        parent.addEventListener('abort', this.onAbort, { once: true });
      }
    }
    if (timeoutMs !== undefined && !controller.signal.aborted) {
      this.timer = setTimeout(() => controller.abort(new LockTimeoutError(name, timeoutMs)), timeoutMs);
    }
  }

  get signal(): AbortSignal | undefined {
    return this.controller?.signal;
  }

  dispose(): void {
    clearTimeout(this.timer);
    if (this.onAbort) this.parent?.removeEventListener('abort', this.onAbort);
  }
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
    if (!signal) return void setTimeout(resolve, ms);
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
