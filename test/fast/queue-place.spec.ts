import { LockLostError } from '../../lib/errors.js';
import { NOBODY, QueuePlace } from '../../lib/queue/queue-place.js';

/** Keys ahead, oldest first, with made-up create revisions. */
const ahead = (...keys: string[]) => new Map(keys.map((key, i) => [key, BigInt(i + 1)]));

function place(slots = 1, session = { alive: true }): QueuePlace {
  return new QueuePlace({ name: 'orders', key: 'p/mine', session, slotsInForce: () => slots });
}

describe('QueuePlace (a contender’s state: joining, waiting, owner, left, lost)', () => {
  it('owns at once when nothing is ahead, and waits for the keys ahead to go otherwise', async () => {
    const first = place();
    first.placed(NOBODY, 10n);
    expect(first.state).toBe('owner');
    await first.wait();

    const second = place();
    second.placed(ahead('p/a', 'p/b'), 10n);
    expect(second.state).toBe('waiting');
    const turn = second.wait();
    second.onDelete('p/a', 11n);
    expect(second.state).toBe('waiting');
    second.onDelete('p/b', 12n);
    await turn;
    expect(second.isOwner).toBe(true);
  });

  it('ignores deletions at or before its snapshot (already counted) and before it is placed', () => {
    const waiting = place();
    waiting.onDelete('p/b', 11n); // not queued yet: nobody tells it of this
    expect(waiting.state).toBe('joining');
    waiting.placed(ahead('p/a', 'p/b'), 10n);
    waiting.onDelete('p/a', 9n);
    expect(waiting.state).toBe('waiting');
    waiting.onDelete('p/a', 12n);
    waiting.onDelete('p/b', 12n);
    expect(waiting.state).toBe('owner');
  });

  it('waits while its own key may have been deleted unseen, and owns once a read says it was not', () => {
    const waiting = place();
    waiting.placed(ahead('p/a'), 10n);
    waiting.unverified(true);
    waiting.onDelete('p/a', 11n);
    expect(waiting.state).toBe('waiting');
    waiting.unverified(false);
    expect(waiting.state).toBe('owner');
  });

  it('counts the slots in force: a semaphore of 2 owns with one key ahead', () => {
    const permit = place(2);
    permit.placed(ahead('p/a', 'p/b'), 10n);
    expect(permit.state).toBe('waiting');
    permit.onDelete('p/b', 11n);
    expect(permit.state).toBe('owner');
  });

  it('loses when its own key is deleted, telling the waiter and the loss listener once', async () => {
    const waiting = place();
    const losses: string[] = [];
    waiting.onLoss((err) => losses.push(err.reason));
    waiting.placed(ahead('p/a'), 10n);
    const turn = waiting.wait();
    waiting.onDelete('p/mine', 11n);
    await expect(turn).rejects.toBeInstanceOf(LockLostError);
    waiting.lose('session-lost');
    waiting.leave();
    expect(waiting.state).toBe('lost');
    expect(losses).toEqual(['key-deleted']);
  });

  it('never owns on a session its clock says has run out (a pause)', async () => {
    const session = { alive: true };
    const waiting = place(1, session);
    waiting.placed(ahead('p/a'), 10n);
    session.alive = false;
    waiting.onDelete('p/a', 11n);
    expect(waiting.state).toBe('lost');
    await expect(waiting.wait()).rejects.toMatchObject({ reason: 'session-lost' });
  });

  it('rejects a waiter when it leaves, and one that aborts with the abort’s reason', async () => {
    const waiting = place();
    waiting.placed(ahead('p/a'), 10n);
    const quit = new AbortController();
    const aborted = waiting.wait(quit.signal);
    quit.abort('enough');
    await expect(aborted).rejects.toBe('enough');
    const left = waiting.wait();
    waiting.leave();
    await expect(left).rejects.toThrow("left the queue of 'orders'");
    expect(waiting.state).toBe('left');
    await expect(place().wait()).rejects.toThrow("'orders' is not queued");
  });

  it('re-reads the queue on a resync: a waiter whose keys ahead went meanwhile owns', () => {
    const waiting = place();
    waiting.placed(ahead('p/a'), 10n);
    waiting.resynced(NOBODY, 20n);
    expect(waiting.state).toBe('owner');
    expect(waiting.asOf).toBe(20n);
  });
});
