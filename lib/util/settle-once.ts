/** Something to undo when a wait settles: a function, or a subscription. */
export type Cleanup = (() => void) | { unsubscribe(): void };

/**
 * The settling of a promise that several sources race to settle (an event, an abort signal, a stream's end):
 * the first wins, every cleanup registered with `onEnd` runs once, and a cleanup registered after it settled
 * runs at once. Safe when a source answers synchronously while it is being registered.
 */
export interface SettleOnce<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
  onEnd(cleanup: Cleanup): void;
  readonly settled: boolean;
}

/** A promise settled by whichever source answers first (see `SettleOnce`): `start` registers the sources. */
export function settled<T = void>(start: (settle: SettleOnce<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start(settleOnce(resolve, reject)));
}

export function settleOnce<T = void>(resolve: (value: T) => void, reject: (reason: unknown) => void): SettleOnce<T> {
  let settled = false;
  const cleanups: Cleanup[] = [];
  const run = (cleanup: Cleanup) => (typeof cleanup === 'function' ? cleanup() : cleanup.unsubscribe());
  const end = () => {
    settled = true;
    for (const cleanup of cleanups.splice(0)) run(cleanup);
  };
  return {
    resolve(value) {
      if (settled) return;
      end();
      resolve(value);
    },
    reject(reason) {
      if (settled) return;
      end();
      reject(reason);
    },
    onEnd(cleanup) {
      if (settled) run(cleanup);
      else cleanups.push(cleanup);
    },
    get settled() {
      return settled;
    },
  };
}
