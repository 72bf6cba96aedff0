import { LockLostError, LockReleasedError, LockService, LockTimeoutError } from '../lib/index.js';
import type { IDeleteRangeRequest } from 'etcd3';
import { EtcdUnavailableError } from '../lib/errors.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { EtcdSessionService } from '../lib/session/session.service.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

async function locksOf(options = {}) {
  const app = await etcd.app(options);
  return app.get(LockService);
}

describe('LockService: acquire and release', () => {
  it('acquires and releases an uncontended lock', async () => {
    const locks = await locksOf({ identity: 'replica-a' });
    const lock = await locks.acquire('orders');
    expect(lock.isHeld).toBe(true);
    expect(lock.name).toBe('orders');
    expect(lock.key).toMatch(/^lock\/orders\/[0-9a-f]+$/);
    expect(lock.value).toBe('replica-a');
    expect(typeof lock.fencingToken).toBe('bigint');
    expect(await locks.holder('orders')).toEqual({
      key: lock.key,
      value: 'replica-a',
      fencingToken: lock.fencingToken,
      leaseId: lock.key.split('/').pop(),
    });
    await lock.release();
    expect(lock.isHeld).toBe(false);
    expect(lock.signal.reason).toBeInstanceOf(LockReleasedError);
    expect(await locks.holder('orders')).toBeNull();
  });

  it('writes keys under the prefix and stores a custom value', async () => {
    const locks = await locksOf({ prefix: 'app1/' });
    const lock = await locks.acquire('jobs', { value: 'worker-7' });
    expect(lock.key).toMatch(/^app1\/lock\/jobs\/[0-9a-f]+$/);
    expect(await etcd.client.get(lock.key).string()).toBe('worker-7');
    await lock.release();
    // A prefix without its final '/' is the same prefix: no app's keys run into another's.
    const unslashed = await (await locksOf({ prefix: 'app2' })).acquire('jobs');
    expect(unslashed.key).toMatch(/^app2\/lock\/jobs\/[0-9a-f]+$/);
    await unslashed.release();
  });

  it('gives strictly increasing fencing tokens to successive holders', async () => {
    const locks = await locksOf();
    const tokens: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const lock = await locks.acquire('seq');
      tokens.push(lock.fencingToken);
      await lock.release();
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
  });

  it('release is idempotent and a late release never frees a newer holder', async () => {
    const locks = await locksOf();
    const first = await locks.acquire('x');
    await Promise.all([first.release(), first.release()]);
    const second = await locks.acquire('x');
    expect(second.key).toBe(first.key); // same lease, same key name…
    await first.release(); // …but a released lock sends nothing more
    expect(second.isHeld).toBe(true);
    expect(await locks.holder('x')).toMatchObject({ fencingToken: second.fencingToken });
    await second.release();
  });

  it("a release whose answer is lost retires the key's name: the late delete cannot reach the next holder here", async () => {
    const app = await etcd.app();
    const locks = app.get(LockService);
    const port = app.get(EtcdConnection).port;
    const first = await locks.acquire('late');
    // The release's delete goes unanswered, and etcd applies it only later (here: when the test sends it).
    const deleteRange = port.deleteRange.bind(port);
    const withheld: IDeleteRangeRequest[] = [];
    port.deleteRange = async (req) => {
      port.deleteRange = deleteRange;
      withheld.push(req);
      throw new EtcdUnavailableError('etcd did not answer (test)', [etcd.endpoint]);
    };
    await first.release(); // retried, guarded by the key's create revision
    expect(withheld.map((req) => req.key?.toString())).toEqual([first.key]);
    expect(await locks.holder('late')).toBeNull();
    const second = await locks.acquire('late');
    expect(second.key).toBe(`${first.key}.1`);
    await deleteRange(withheld[0], 'apply the late delete');
    expect(await locks.holder('late')).toMatchObject({ key: second.key, fencingToken: second.fencingToken });
    await second.release();
    const third = await locks.acquire('late');
    expect(third.key).toBe(second.key); // answered releases keep the name
    await third.release();
    expect(second.signal.reason).toBeInstanceOf(LockReleasedError);
  });

  it('names of any UTF-8 exclude each other as ASCII ones do (keys are compared in bytes)', async () => {
    const a = await locksOf({ identity: 'a' });
    const b = await locksOf({ identity: 'b' });
    for (const name of ['commandes-été', 'заказы', '注文', '🔒']) {
      const held = await a.acquire(name);
      expect(await b.tryAcquire(name)).toBeNull();
      const waiting = b.acquire(name);
      await etcd.waitForKeys(`lock/${name}/`, 2);
      expect((await a.holder(name))?.value).toBe('a');
      await held.release();
      const next = await waiting;
      expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
      await next.release();
    }
  });

  it('supports `await using`', async () => {
    const locks = await locksOf();
    let seen: bigint | undefined;
    {
      await using lock = await locks.acquire('scoped');
      seen = lock.fencingToken;
      expect((await locks.holder('scoped'))?.fencingToken).toBe(seen);
    }
    expect(await locks.holder('scoped')).toBeNull();
  });
});

describe('LockService: waiting', () => {
  it('serves 5 waiters from 5 instances in arrival order', async () => {
    const holderLocks = await locksOf();
    const held = await holderLocks.acquire('fifo');
    const waiters = await Promise.all([1, 2, 3, 4, 5].map((i) => locksOf({ identity: `w${i}` })));
    const order: string[] = [];
    const pending: Array<Promise<void>> = [];
    for (const [i, locks] of waiters.entries()) {
      pending.push(
        locks.acquire('fifo').then(async (lock) => {
          order.push(lock.value);
          await lock.release();
        }),
      );
      // Arrival order is the order etcd created the keys: wait until this waiter's key exists.
      await etcd.waitForKeys(`lock/fifo/`, i + 2);
    }
    await held.release();
    await Promise.all(pending);
    expect(order).toEqual(['w1', 'w2', 'w3', 'w4', 'w5']);
  });

  it('excludes two callers in one instance, in arrival order, with one key', async () => {
    const locks = await locksOf();
    const first = await locks.acquire('local');
    let secondHeld = false;
    const second = locks.acquire('local').then((lock) => {
      secondHeld = true;
      return lock;
    });
    const third = locks.acquire('local');
    expect(await locks.tryAcquire('local')).toBeNull();
    expect(await etcd.client.getAll().prefix('lock/local/').keys()).toHaveLength(1);
    expect(secondHeld).toBe(false);
    await first.release();
    const secondLock = await second;
    expect(secondLock.fencingToken).toBeGreaterThan(first.fencingToken);
    await secondLock.release();
    const thirdLock = await third;
    expect(thirdLock.fencingToken).toBeGreaterThan(secondLock.fencingToken);
    await thirdLock.release();
  });

  it('rejects with LockTimeoutError on timeout and leaves no queue key', async () => {
    const [a, b] = [await locksOf(), await locksOf()];
    const held = await a.acquire('busy');
    await expect(b.acquire('busy', { timeout: 100 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await etcd.client.getAll().prefix('lock/busy/').keys()).toEqual([held.key]);
    // Also when the wait is in the local queue of the holder's own instance.
    await expect(a.acquire('busy', { timeout: 50 })).rejects.toThrow("Timed out after 50 ms waiting for lock 'busy'");
    await held.release();
  });

  it('rejects with the abort reason when the signal aborts and leaves no queue key', async () => {
    const [a, b] = [await locksOf(), await locksOf()];
    const held = await a.acquire('busy');
    const controller = new AbortController();
    const waiting = b.acquire('busy', { signal: controller.signal });
    await etcd.waitForKeys('lock/busy/', 2);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(await etcd.client.getAll().prefix('lock/busy/').keys()).toEqual([held.key]);
    const already = AbortSignal.abort(reason);
    await expect(b.acquire('busy', { signal: already })).rejects.toBe(reason);
    await held.release();
  });

  it('hands the lock to a waiter in another instance as soon as the holder app closes', async () => {
    const holderApp = await etcd.app({ ttl: 30 });
    const waiter = await locksOf({ ttl: 30 });
    await holderApp.get(LockService).acquire('handover');
    const acquired = waiter.acquire('handover');
    await etcd.waitForKeys('lock/handover/', 2);
    const started = performance.now();
    await holderApp.close();
    const lock = await acquired;
    // The lease was revoked at shutdown, not left to expire after 30 s.
    expect(performance.now() - started).toBeLessThan(5000);
    await lock.release();
  });
});

describe('LockService: tryAcquire', () => {
  it('returns a lock when free and null when held', async () => {
    const [a, b] = [await locksOf(), await locksOf()];
    const lock = await a.tryAcquire('t');
    expect(lock?.isHeld).toBe(true);
    expect(await b.tryAcquire('t')).toBeNull();
    expect(await a.tryAcquire('t')).toBeNull();
    await lock?.release();
    const again = await b.tryAcquire('t');
    expect(again?.isHeld).toBe(true);
    await again?.release();
  });

  it('lets exactly one of 10 concurrent callers in 3 instances win', async () => {
    const instances = await Promise.all([locksOf(), locksOf(), locksOf()]);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => instances[i % 3].tryAcquire('storm')));
    const winners = results.filter((r) => r !== null);
    expect(winners).toHaveLength(1);
    expect(await etcd.client.getAll().prefix('lock/storm/').keys()).toEqual([winners[0]?.key]);
    await winners[0]?.release();
  });
});

describe('LockService: withLock', () => {
  it('runs fn with the lock and returns its result', async () => {
    const locks = await locksOf();
    const result = await locks.withLock('w', async (lock) => {
      expect(lock.isHeld).toBe(true);
      expect(locks.current()).toBe(lock);
      expect(LockService.current()).toBe(lock);
      return 42;
    });
    expect(result).toBe(42);
    expect(LockService.current()).toBeUndefined();
    expect(await locks.holder('w')).toBeNull();
  });

  it('releases when fn throws, and the error propagates', async () => {
    const locks = await locksOf();
    const boom = new Error('boom');
    let inside: { isHeld: boolean; signal: AbortSignal } | undefined;
    await expect(
      locks.withLock('w', (lock) => {
        inside = lock;
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(inside?.isHeld).toBe(false);
    expect(inside?.signal.aborted).toBe(true);
    expect(await locks.holder('w')).toBeNull();
  });
});

describe('LockService: losing a lock', () => {
  it('aborts the signal when the lease is revoked from outside, and a new session serves new locks', async () => {
    const app = await etcd.app();
    const locks = app.get(LockService);
    const renewed = new Promise((resolve) => app.get(EtcdSessionService).onSession(resolve));
    const lock = await locks.acquire('lost');
    const lease = lock.key.split('/').pop() as string;
    const aborted = whenAborted(lock.signal);
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${lease}`).toString() });
    await aborted;
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    expect(lock.isHeld).toBe(false);
    await lock.release();
    // The session is renewed once etcd answers; the next acquire uses the new lease.
    await renewed;
    const next = await locks.acquire('lost');
    expect(next.key).not.toBe(lock.key);
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    await next.release();
  });

  it('aborts the signal when its key is deleted from outside', async () => {
    const locks = await locksOf();
    const lock = await locks.acquire('deleted');
    const aborted = whenAborted(lock.signal);
    await etcd.client.delete().key(lock.key);
    await aborted;
    expect(lock.signal.reason).toEqual(expect.objectContaining({ reason: 'key-deleted', lockName: 'deleted' }));
    expect(lock.isHeld).toBe(false);
    await lock.release();
  });

  it('rejects a waiter whose queue key is deleted from outside', async () => {
    const [a, b] = [await locksOf(), await locksOf()];
    const held = await a.acquire('q');
    const waiting = b.acquire('q');
    const [, waiterKey] = await etcd.waitForKeys('lock/q/', 2);
    await etcd.client.delete().key(waiterKey);
    await expect(waiting).rejects.toBeInstanceOf(LockLostError);
    await held.release();
  });

  it('commits fenced transactions only while held', async () => {
    const locks = await locksOf();
    const lock = await locks.acquire('fenced');
    const ok = await lock.fencedTxn().put('counter', '1').commit();
    expect(ok.succeeded).toBe(true);
    // A comparison of the caller's own that fails is not a lost lock.
    const mine = await lock.fencedTxn().if('counter', 'Value', '==', '0').put('counter', '2').commit();
    expect(mine.succeeded).toBe(false);
    expect(lock.isHeld).toBe(true);
    // Someone deletes the lock key: the fence fails and the lock is lost. (Listen first: the watch event can
    // abort the signal before the delete's own answer arrives.)
    const aborted = whenAborted(lock.signal);
    await etcd.client.delete().key(lock.key);
    await aborted;
    await expect(lock.fencedTxn().put('counter', '3').commit()).rejects.toBeInstanceOf(LockLostError);
    expect(await etcd.client.get('counter').string()).toBe('1');
    await lock.release();
    await etcd.client.delete().key('counter');
  });

  it('rejects a fenced transaction at etcd when the key went away before the client noticed', async () => {
    const locks = await locksOf();
    const lock = await locks.acquire('fenced2');
    // A new holder's key replaced ours between our check and our write: etcd must refuse the write.
    await etcd.client.delete().key(lock.key);
    const txn = lock.fencedTxn().put('counter2', 'stale');
    await expect(txn.commit()).rejects.toBeInstanceOf(LockLostError);
    expect(await etcd.client.get('counter2').string()).toBeNull();
    await lock.release();
  });
});

describe('LockService: holder and watch', () => {
  it('watches holder changes and value changes, null when free', async () => {
    const [a, b] = [await locksOf({ identity: 'a' }), await locksOf({ identity: 'b' })];
    const values: Array<string | null> = [];
    let changed: () => void = () => {};
    const subscription = b.watch('svc').subscribe((h) => {
      values.push(h ? h.value : null);
      changed();
    });
    const next = (count: number) =>
      new Promise<void>((resolve) => {
        changed = () => values.length >= count && resolve();
        changed();
      });
    await next(1);
    const first = await a.acquire('svc');
    await next(2);
    await first.setValue('ok');
    await next(3);
    const waiting = b.acquire('svc');
    await etcd.waitForKeys('lock/svc/', 2);
    await first.release();
    const second = await waiting;
    await next(4);
    await second.release();
    await next(5);
    subscription.unsubscribe();
    expect(values).toEqual([null, 'a', 'ok', 'b', null]);
  });
});

/** Resolves once `prefix` holds `count` keys, oldest first (a watch, not a poll). */
