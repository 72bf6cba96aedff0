import { AsyncResource } from 'node:async_hooks';
import { EventEmitter } from 'node:events';

/**
 * An EventEmitter whose listeners run in the async context of the code that created it, as a real client's
 * stream events do (they come from its own socket). Without it, an in-memory watch event would run in the
 * context of whichever client made the write, and AsyncLocalStorage-based logging or tracing of several apps
 * in one process would credit the wrong app.
 */
export class ScopedEmitter extends EventEmitter {
  private readonly scope = new AsyncResource('InMemoryEtcd');

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    return this.scope.runInAsyncScope(() => super.emit(event, ...args));
  }
}
