import { onAbort } from '../util/wait-signal.js';
import { settled } from '../util/settle-once.js';

/** A caller's turn at a hold in this process: what to give back when the hold is let go. */
export interface LocalSlot {
  /** Gives the turn back; once (a second call does nothing). */
  exit(): void;
}

/** A slot that gives nothing back (a hold with no in-process queue). */
export const NO_LOCAL_SLOT: LocalSlot = { exit: () => undefined };

/**
 * An in-process FIFO per name, in front of etcd. All callers in one app instance share one lease and so one
 * etcd key per name; this queue lets one of them at a time use that key, so two callers in one process exclude
 * each other without a second etcd request per waiter.
 */
export class LocalQueue {
  /** Names taken now, and who waits for each (no list until someone waits: most names have nobody). */
  private readonly names = new Map<string, Array<() => void> | undefined>();

  /** Takes the name now if nobody in this process has it; returns the slot that gives it back. */
  tryEnter(name: string): LocalSlot | undefined {
    if (this.names.has(name)) return undefined;
    this.names.set(name, undefined);
    return new LocalTurn(this, name);
  }

  /** Waits in arrival order for the name. Rejects with the signal's reason if it aborts first. */
  enter(name: string, signal?: AbortSignal): Promise<LocalSlot> {
    const now = this.tryEnter(name);
    if (now) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const queued = this.names.get(name) ?? [];
    this.names.set(name, queued);
    return settled((settle) => {
      const wake = () => settle.resolve(new LocalTurn(this, name));
      queued.push(wake);
      settle.onEnd(() => {
        const i = queued.indexOf(wake);
        if (i >= 0) queued.splice(i, 1);
      });
      settle.onEnd(onAbort(signal, (reason) => settle.reject(reason)));
    });
  }

  /** @internal The turn at `name` is given back: the next waiter's, or nobody's. */
  handOn(name: string): void {
    const next = this.names.get(name)?.shift();
    if (next) next();
    else this.names.delete(name);
  }
}

/** One turn at a name (an object, not a closure: a held lock keeps it, and 100,000 held locks keep 100,000). */
class LocalTurn implements LocalSlot {
  constructor(
    /** Until the turn is given back. */
    private queue: LocalQueue | undefined,
    private readonly name: string,
  ) {}

  exit(): void {
    const queue = this.queue;
    this.queue = undefined;
    queue?.handOn(this.name);
  }
}
