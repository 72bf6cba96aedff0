import { EtcdUnavailableError, LockLostError } from '../errors.js';
import { Backoff } from '../util/backoff.js';
import { sleep } from '../util/wait-signal.js';
import type { Contender } from './contender.js';

const JOIN_RETRY_MIN_MS = 100;
const JOIN_RETRY_MAX_MS = 1000;

/**
 * Joins the queue, retrying while etcd does not answer (a member restarting, channels reconnecting), until the
 * wait ends or the session does. Safe to repeat: a retry whose first attempt was applied finds our key and keeps
 * its place (its create revision).
 */
export async function joinPatiently(contender: Contender, signal: AbortSignal | undefined): Promise<void> {
  const backoff = new Backoff(JOIN_RETRY_MIN_MS, JOIN_RETRY_MAX_MS);
  for (;;) {
    try {
      await contender.join();
      signal?.throwIfAborted();
      return;
    } catch (err) {
      if (!(err instanceof EtcdUnavailableError) || signal?.aborted) throw err;
      await sleep(backoff.next(), signal);
      // The session ended while the join was in doubt (it may have been applied: a process paused past its TTL
      // finds its request timed out on resume): the queue place, if it had one, is lost with it.
      // (By our clock it may have ended before its deadline timer told anyone: then no loss is recorded yet.)
      if (!contender.session.alive) throw contender.lostError ?? new LockLostError(contender.name, 'session-lost', { cause: err });
    }
  }
}

/** Joins and waits for our turn; on any failure (timeout, abort, loss) leaves, so nothing is left in etcd. */
export async function takeTurn(contender: Contender, signal: AbortSignal | undefined): Promise<void> {
  try {
    await joinPatiently(contender, signal);
    await contender.waitForTurn(signal);
  } catch (err) {
    await contender.leave();
    throw err;
  }
}

/**
 * Holds only if our turn is now, for every kind of hold: one read when the name is busy (a `@Singleton` firing on
 * every replica costs the others that read). Otherwise one join: with one slot, a join that puts our key only if
 * the name is still free (`joinIfFree`); with more (a semaphore), a join that queues, and a leave if our turn did
 * not come. Either way nothing is left in etcd when it returns false. Without `probe`, no read: the join decides
 * (a scheduled job's claim, whose guard the read could not check).
 */
export async function tryTakeTurn(contender: Contender, probe = true): Promise<boolean> {
  try {
    if (probe && (await contender.isBusy())) {
      await contender.leave(); // nothing was sent: this only stops listening
      return false;
    }
    if (contender.joinsOnlyIfFree) {
      if ((await contender.joinIfFree()) === 'busy') return false;
    } else {
      await contender.join();
    }
    if (!contender.isOwner) {
      await contender.leave();
      return false;
    }
    await contender.waitForTurn();
    return true;
  } catch (err) {
    await contender.leave();
    throw err;
  }
}
