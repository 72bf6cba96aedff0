import { LockReleasedError } from '../errors.js';
import type { FencedTxn } from './fenced-txn.js';
import type { Lock } from './lock.interface.js';

/**
 * A reentrant acquire's handle (`reentrant: true`): the hold the caller's context already has, taken again
 * without a request. Its release only ends this handle; the outer hold's release is the real one.
 */
export class NestedLock implements Lock {
  private released = false;

  constructor(private readonly outer: Lock) {}

  get name(): string {
    return this.outer.name;
  }

  get key(): string {
    return this.outer.key;
  }

  get value(): string {
    return this.outer.value;
  }

  get fencingToken(): bigint {
    return this.outer.fencingToken;
  }

  get signal(): AbortSignal {
    return this.outer.signal;
  }

  get isHeld(): boolean {
    return !this.released && this.outer.isHeld;
  }

  async release(): Promise<void> {
    this.released = true;
  }

  setValue(value: string): Promise<void> {
    if (this.released) return Promise.reject(new LockReleasedError(this.name));
    return this.outer.setValue(value);
  }

  fencedTxn(): FencedTxn {
    return this.outer.fencedTxn();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
