import type { EtcdPort } from '../etcd/etcd-port.js';
import { Backoff } from '../util/backoff.js';
import { pause, withTimeout } from '../util/wait-signal.js';

const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 500;

/**
 * Revokes lease `id`, sending the revoke again after each failure until etcd answers or `until` (a
 * `performance.now()` time) comes (a try under way then is not waited for); true if etcd answered. Safe to repeat:
 * a lease already gone counts as revoked. Each try goes to the member etcd3 picks for it: with a member down, a try
 * that meets it fails at once, and a few quick tries reach a live one (three tries half a second apart all met a
 * killed member in CI, and left the lease to expire after a clean shutdown).
 */
export async function revokeUntil(rpc: EtcdPort, id: string, until: number): Promise<boolean> {
  const backoff = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  for (;;) {
    try {
      // A member that accepts the call and never answers (paused) must not hold the caller past `until`.
      await withTimeout(rpc.leaseRevoke(id), Math.max(1, until - performance.now()), () => new Error('out of time'));
      return true;
    } catch {
      const delay = backoff.next();
      if (performance.now() + delay >= until) return false;
      await pause(delay);
    }
  }
}
