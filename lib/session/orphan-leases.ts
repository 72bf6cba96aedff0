import type { EtcdPort } from '../etcd/etcd-port.js';
import { pause } from '../util/wait-signal.js';
import { jittered } from '../util/backoff.js';
import { revokeUntil } from './lease-revoke.js';

const RETRY_MS = 500;

/**
 * Leases that may exist on etcd though we no longer use them: grants that failed (the request may still reach
 * etcd) and sessions we gave up on by our own deadline. One loop revokes them, each until etcd answers or until
 * it would have expired anyway; shutdown revokes what is left, so no lease of ours outlives a clean stop.
 */
export class OrphanLeases {
  private readonly leases = new Map<string, { until: number; untilAnswered: boolean }>();
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly rpc: EtcdPort) {}

  /**
   * Adds a lease to revoke for `forMs` from now. `untilAnswered`: stop once etcd answers (a lost session's lease).
   * Otherwise keep revoking until the time is up (a failed grant: etcd also answers the revoke of a lease that does
   * not exist *yet*).
   */
  add(id: string, forMs: number, untilAnswered: boolean): void {
    this.leases.set(id, { until: performance.now() + forMs, untilAnswered });
    this.running ??= this.loop().finally(() => (this.running = undefined));
  }

  /** At shutdown: stops the loop and revokes every lease left, each until etcd answers or `until` comes. */
  async revokeNow(until: number): Promise<void> {
    this.stopped = true;
    const ids = [...this.leases.keys()];
    this.leases.clear();
    await Promise.all(ids.map((id) => revokeUntil(this.rpc, id, until)));
  }

  private async loop(): Promise<void> {
    while (!this.stopped && this.leases.size > 0) {
      await Promise.all(
        [...this.leases].map(async ([id, { until, untilAnswered }]) => {
          const answered = await this.rpc.leaseRevoke(id).then(
            () => true,
            () => false,
          );
          if ((answered && untilAnswered) || performance.now() >= until) this.leases.delete(id);
        }),
      );
      if (this.leases.size > 0) await pause(jittered(RETRY_MS));
    }
  }
}
