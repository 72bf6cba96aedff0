import { Backoff } from '../util/backoff.js';
import { pause } from '../util/wait-signal.js';
import type { LeaseSession } from './lease-session.js';

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 2000;

/**
 * Sends `request` until etcd answers it, backing off between tries, for as long as `session` lives (once it has
 * ended, what the request was for went with the lease). Resolves with the answer, or undefined if the session
 * ended first. Only for requests that are safe to repeat (guarded by a create revision, or reads).
 */
export async function untilAnswered<T>(session: LeaseSession, request: () => Promise<T>): Promise<T | undefined> {
  const backoff = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  for (;;) {
    try {
      return await request();
    } catch {
      if (!session.alive) return undefined;
      await pause(backoff.next());
    }
  }
}
