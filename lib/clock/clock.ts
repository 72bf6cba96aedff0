/** A timer set on a `Clock`: `cancel()` stops it (a no-op once it fired). */
export interface ClockTimer {
  /** Stops the timer: its function is not called (a no-op once it was). */
  cancel(): void;
}

/**
 * The time the library's deadlines and timers run on: the session's local deadline and keepalives, `acquire`
 * timeouts, `minHoldMs`, the in-memory etcd's lease expiry, and scheduled jobs' fire times. The default is the
 * system's (`systemClock`); tests pass `ManualClock` from `nestjs-etcd-lock/testing` (module option `clock`) to
 * move time by hand. Transport retries and back-offs stay on the system's timers: they wait for a network, not
 * for time to pass.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (as `Date.now()`): what fire times are compared with. */
  now(): number;
  /** Monotonic milliseconds from an arbitrary origin (as `performance.now()`): what deadlines are measured on. */
  monotonic(): number;
  /**
   * Calls `fn` once after `ms`. A timer with `unref` does not keep the process alive on its own (a deadline that
   * only matters while something else runs).
   */
  setTimer(fn: () => void, ms: number, options?: { unref?: boolean }): ClockTimer;
}

/**
 * The system's clock. It looks the globals up at each call, so jest's fake timers (installed after import) also
 * drive it.
 */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer(fn: () => void, ms: number, options?: { unref?: boolean }): ClockTimer {
    const timer = setTimeout(fn, ms);
    if (options?.unref) timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
});

/** Resolves after `ms` on `clock`, or rejects with `signal.reason` as soon as it aborts. */
export function sleepOn(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A clock's own fields, checked where a user passes one (module option `clock`). */
export function isClock(v: unknown): v is Clock {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return typeof o.now === 'function' && typeof o.monotonic === 'function' && typeof o.setTimer === 'function';
}
