import { onAbort } from '../util/wait-signal.js';
import { settled } from '../util/settle-once.js';

/**
 * An in-process FIFO per name, in front of etcd. All callers in one app instance share one lease and so one
 * etcd key per name; this queue lets one of them at a time use that key, so two callers in one process exclude
 * each other without a second etcd request per waiter.
 */
export class LocalQueue {
  private readonly names = new Map<string, Array<() => void>>();

  /** Takes the name now if nobody in this process has it; returns the function that gives it back. */
  tryEnter(name: string): (() => void) | undefined {
    if (this.names.has(name)) return undefined;
    this.names.set(name, []);
    return this.exit(name);
  }

  /** Waits in arrival order for the name. Rejects with the signal's reason if it aborts first. */
  enter(name: string, signal?: AbortSignal): Promise<() => void> {
    const now = this.tryEnter(name);
    if (now) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const waiters = this.names.get(name) as Array<() => void>;
    return settled((settle) => {
      const wake = () => settle.resolve(this.exit(name));
      waiters.push(wake);
      settle.onEnd(() => {
        const i = waiters.indexOf(wake);
        if (i >= 0) waiters.splice(i, 1);
      });
      settle.onEnd(onAbort(signal, (reason) => settle.reject(reason)));
    });
  }

  private exit(name: string): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const waiters = this.names.get(name);
      const next = waiters?.shift();
      if (next) next();
      else this.names.delete(name);
    };
  }
}
