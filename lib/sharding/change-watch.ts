import type { EtcdPort, PortWatcher } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

/**
 * Calls `onChange` after any change under `prefix` from `fromRevision` on, and after a restart (etcd cancelled the
 * watch, e.g. on compaction: changes may have been missed). The caller re-reads; events carry no state here.
 */
export class ChangeWatch {
  private watcher: PortWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly backoff = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);

  constructor(
    private readonly rpc: EtcdPort,
    private readonly prefix: string,
    private readonly onChange: () => void,
  ) {}

  start(fromRevision: bigint): void {
    if (this.closed) return;
    const watcher = this.rpc.watch({ prefix: this.prefix, startRevision: fromRevision });
    this.watcher = watcher;
    watcher.on('data', () => this.onChange());
    watcher.on('error', () => {
      if (this.watcher !== watcher) return;
      // etcd already cancelled it: forget it.
      this.watcher = undefined;
      watcher.removeAllListeners();
      void this.restart();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const watcher = this.watcher;
    this.watcher = undefined;
    watcher?.removeAllListeners();
    watcher?.on('error', () => undefined);
    await watcher?.cancel();
  }

  private async restart(): Promise<void> {
    if (this.closed) return;
    try {
      const res = await this.rpc.range({ key: Buffer.from(this.prefix), count_only: true }, `read the revision of '${this.prefix}'`);
      this.backoff.reset();
      this.start(BigInt(res.header.revision) + 1n);
      this.onChange();
    } catch {
      this.timer = setTimeout(() => void this.restart(), this.backoff.next());
      this.timer.unref();
    }
  }
}
