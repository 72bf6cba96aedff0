import { LockTimeoutError } from './errors.js';

/**
 * One AbortSignal for "the caller's signal aborted, or the timeout passed", whose timeout reason is a
 * `LockTimeoutError`. Call `dispose()` when done so no timer or listener outlives the call.
 */
export class WaitSignal {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    name: string,
    timeoutMs: number | undefined,
    private readonly parent: AbortSignal | undefined,
  ) {
    if (parent) {
      if (parent.aborted) this.controller.abort(parent.reason);
      else {
        this.onAbort = () => this.controller.abort(parent.reason);
        parent.addEventListener('abort', this.onAbort, { once: true });
      }
    }
    if (timeoutMs !== undefined && !this.controller.signal.aborted) {
      this.timer = setTimeout(() => this.controller.abort(new LockTimeoutError(name, timeoutMs)), timeoutMs);
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
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

/** Resolves after `ms`, or rejects with `signal.reason` as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
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
