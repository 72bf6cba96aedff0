import type { INestApplicationContext } from '@nestjs/common';
import { type Lock, LockService, ReadWriteLockService, SemaphoreService } from '../lib/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { useEtcd } from './harness/fixtures.js';

/*
 * Every lock-like hold takes one path (`HoldPath`): the same tryAcquire algorithm, and `with*` callbacks that see
 * their hold through their kind's `current()`. Each property is checked for every kind.
 */
const etcd = useEtcd();

/** The requests `app` sends while `fn` runs, by kind ('range', 'txn', 'deleteRange'). */
async function requestsDuring(app: INestApplicationContext, fn: () => Promise<unknown>): Promise<string[]> {
  const port = app.get(EtcdConnection).port;
  const sent: string[] = [];
  const original = { range: port.range, txn: port.txn, deleteRange: port.deleteRange };
  // The app's default election ('leader') may still be checking the keys it waits for: not the call's requests.
  const push = (method: string, what: string) => !what.includes("'leader'") && sent.push(method);
  port.range = (req, what) => {
    push('range', what);
    return original.range.call(port, req, what);
  };
  port.txn = (req, what, timeoutMs) => {
    push('txn', what);
    return original.txn.call(port, req, what, timeoutMs);
  };
  port.deleteRange = (req, what) => {
    push('deleteRange', what);
    return original.deleteRange.call(port, req, what);
  };
  try {
    await fn();
  } finally {
    Object.assign(port, original);
  }
  return sent;
}

interface Kind {
  readonly kind: string;
  /** Holds the name in `app`. */
  hold(app: INestApplicationContext): Promise<Lock>;
  /** Tries to hold it in `app`. */
  tryHold(app: INestApplicationContext): Promise<Lock | null>;
}

const kinds: Kind[] = [
  { kind: 'lock', hold: (app) => app.get(LockService).acquire('busy'), tryHold: (app) => app.get(LockService).tryAcquire('busy') },
  {
    kind: 'semaphore (limit 2, both held)',
    hold: async (app) => {
      const semaphores = app.get(SemaphoreService);
      const [first, second] = [await semaphores.acquire('busy', { limit: 2 }), await semaphores.acquire('busy', { limit: 2 })];
      const release = async () => {
        await first.release();
        await second.release();
      };
      return { ...first, release } as Lock;
    },
    tryHold: (app) => app.get(SemaphoreService).tryAcquire('busy', { limit: 2 }),
  },
  {
    kind: 'read lock (a writer holds)',
    hold: (app) => app.get(ReadWriteLockService).acquireWrite('busy'),
    tryHold: (app) => app.get(ReadWriteLockService).tryAcquireRead('busy'),
  },
  {
    kind: 'write lock (a reader holds)',
    hold: (app) => app.get(ReadWriteLockService).acquireRead('busy'),
    tryHold: (app) => app.get(ReadWriteLockService).tryAcquireWrite('busy'),
  },
];

describe('one path for every hold', () => {
  it.each(kinds)('$kind: tryAcquire on a name held elsewhere costs one read and leaves nothing', async ({ hold, tryHold }) => {
    const [a, b] = [await etcd.app({ identity: 'a' }), await etcd.app({ identity: 'b' })];
    const held = await hold(a);
    const keys = await etcd.client.getAll().prefix('').keys();
    let got: Lock | null = null;
    expect(await requestsDuring(b, async () => (got = await tryHold(b)))).toEqual(['range']);
    expect(got).toBeNull();
    expect(await etcd.client.getAll().prefix('').keys()).toEqual(keys);
    await held.release();
    // Free now: a read, then one join that holds.
    let taken: Lock | null = null;
    expect(await requestsDuring(b, async () => (taken = await tryHold(b)))).toEqual(['range', 'txn']);
    expect((taken as Lock | null)?.isHeld).toBe(true);
    await (taken as Lock | null)?.release();
  });

  it('each with* callback sees its hold through its own kind’s current(), and no other kind’s', async () => {
    const app = await etcd.app();
    const [locks, semaphores, rw] = [app.get(LockService), app.get(SemaphoreService), app.get(ReadWriteLockService)];
    const seen = () => ({ lock: LockService.current(), permit: SemaphoreService.current(), rw: ReadWriteLockService.current() });
    await locks.withLock('l', async (lock) => {
      expect(seen()).toEqual({ lock, permit: undefined, rw: undefined });
      // Nested: a permit inside the lock's callback does not hide the lock.
      await semaphores.withPermit('p', async (permit) => expect(seen()).toEqual({ lock, permit, rw: undefined }), { limit: 1 });
    });
    await semaphores.withPermit('p', async (permit) => expect(semaphores.current()).toBe(permit), { limit: 3 });
    await rw.withRead('r', async (reader) => expect(seen()).toEqual({ lock: undefined, permit: undefined, rw: reader }));
    await rw.withWrite('r', async (writer) => expect(rw.current()).toBe(writer));
    expect(seen()).toEqual({ lock: undefined, permit: undefined, rw: undefined });
  });
});
