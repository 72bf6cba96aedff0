import { filter, firstValueFrom } from 'rxjs';
import { EtcdSessionService, InvalidArgumentError, LockLostError, LockTimeoutError, type Permit, SemaphoreService } from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { useEtcd } from './harness/fixtures.js';
import { NodeProcess } from './harness/processes.js';

const etcd = useEtcd();
const semaphoreKeys = async () => (await etcd.client.getAll().prefix('semaphore/').keys()).sort();

describe('SemaphoreService', () => {
  it('holds at most `limit` permits across instances; waiters are served in arrival order with greater tokens', async () => {
    const [a, b] = [await etcd.app({ identity: 'a' }), await etcd.app({ identity: 'b' })];
    const [sa, sb] = [a.get(SemaphoreService), b.get(SemaphoreService)];
    const first = await sa.acquire('exports', { limit: 2 });
    const second = await sb.acquire('exports', { limit: 2 });
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await sa.tryAcquire('exports', { limit: 2 })).toBeNull();

    const order: string[] = [];
    const waiting: Array<Promise<Permit>> = [];
    const watcher = await etcd.client.watch().prefix('semaphore/exports/').create();
    for (const [who, service] of [
      ['a1', sa],
      ['b1', sb],
      ['a2', sa],
    ] as const) {
      // The next one queues only once this one's key is in etcd: arrival order is create order.
      const queued = new Promise((resolve) => watcher.once('put', resolve));
      waiting.push(
        service.acquire('exports', { limit: 2, value: who }).then((p) => {
          order.push(who);
          return p;
        }),
      );
      await queued;
    }
    await watcher.cancel();
    expect(await sa.holders('exports')).toEqual([
      expect.objectContaining({ value: 'a', fencingToken: first.fencingToken }),
      expect.objectContaining({ value: 'b', fencingToken: second.fencingToken }),
    ]);
    await first.release();
    const a1 = await waiting[0];
    expect(order).toEqual(['a1']);
    await second.release();
    const b1 = await waiting[1];
    await a1.release();
    const a2 = await waiting[2];
    expect(order).toEqual(['a1', 'b1', 'a2']);
    expect(a2.fencingToken).toBeGreaterThan(b1.fencingToken);
    expect(a2.key).toMatch(/^semaphore\/exports\/[0-9a-f]+-\d+-of-2$/);
    await Promise.all([b1.release(), a2.release()]);
    expect(await semaphoreKeys()).toEqual([]);
  });

  it('a rolling deploy that changes the limit (3 → 5): the oldest permit sets the limit in force, and no caller errors', async () => {
    const olds = (await etcd.app({ identity: 'old' })).get(SemaphoreService);
    const news = (await etcd.app({ identity: 'new' })).get(SemaphoreService);
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await olds.acquire('partner', { limit: 3 }));
    // A new replica asks for 5 while the old permits (limit 3) are the oldest: it waits under 3.
    expect(await news.tryAcquire('partner', { limit: 5 })).toBeNull();
    const waiting = news.acquire('partner', { limit: 5 });
    await etcd.waitForKeys('semaphore/partner/', 4);
    await held[0].release();
    const fourth = await waiting;
    await Promise.all([held[1].release(), held[2].release()]);
    // Once the old permits are gone, the new permit is the oldest: 5 may be held.
    const more = [];
    for (let i = 0; i < 4; i++) more.push(await news.tryAcquire('partner', { limit: 5 }));
    expect(more.every((permit) => permit !== null)).toBe(true);
    expect(await news.tryAcquire('partner', { limit: 5 })).toBeNull();
    // An old replica still asking for 3 waits under 5 too: none is free now.
    expect(await olds.tryAcquire('partner', { limit: 3 })).toBeNull();
    await Promise.all([fourth, ...more].map((permit) => permit?.release()));
    expect(await semaphoreKeys()).toEqual([]);
  });

  it('refuses bad input before any request', async () => {
    const app = await etcd.app();
    const semaphores = app.get(SemaphoreService);
    for (const limit of [0, -1, 1.5, 10_001, Number.NaN, '2']) {
      await expect(semaphores.acquire('partner', { limit } as never)).rejects.toThrow(InvalidArgumentError);
    }
    await expect(semaphores.acquire('partner', undefined as never)).rejects.toThrow("'options.limit'");
    await expect(semaphores.acquire('a/b', { limit: 1 })).rejects.toThrow(InvalidArgumentError);
    await expect(semaphores.tryAcquire('partner', { limit: 1, timeout: 5 } as never)).rejects.toThrow(
      "Invalid argument 'options.timeout': is not a known option",
    );
    expect(await semaphoreKeys()).toEqual([]);
  });

  it('aborts the permit’s signal when its key is deleted or its lease revoked; timeout and abort leave no key', async () => {
    const app = await etcd.app();
    const semaphores = app.get(SemaphoreService);
    const one = await semaphores.acquire('jobs', { limit: 1 });
    const timedOut = await semaphores.acquire('jobs', { limit: 1, timeout: 100 }).catch((err: unknown) => err);
    expect(timedOut).toBeInstanceOf(LockTimeoutError);
    const controller = new AbortController();
    const aborted = semaphores.acquire('jobs', { limit: 1, signal: controller.signal });
    controller.abort(new Error('not needed'));
    await expect(aborted).rejects.toThrow('not needed');
    expect(await semaphoreKeys()).toEqual([one.key]);

    // Fenced writes commit while the permit is held.
    expect((await one.fencedTxn().put('jobs/state', 'x').commit()).succeeded).toBe(true);
    await etcd.client.delete().key(one.key);
    expect(await whenAborted(one.signal)).toMatchObject({ name: LockLostError.name, reason: 'key-deleted' });
    await expect(one.fencedTxn().put('jobs/state', 'y').commit()).rejects.toThrow(LockLostError);
    expect(await etcd.client.get('jobs/state').string()).toBe('x');
    await etcd.client.delete().key('jobs/state');
    await one.release();

    const two = await semaphores.acquire('jobs', { limit: 1 });
    const { leaseId } = app.get(EtcdSessionService).status();
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${leaseId}`).toString() });
    // Whichever tells first: the deletion of the key, or the session's keepalive finding the lease gone.
    expect(await whenAborted(two.signal)).toMatchObject({
      name: LockLostError.name,
      reason: expect.stringMatching(/^(key-deleted|session-lost)$/),
    });
  });

  it('watch() follows the permits held, from etcd', async () => {
    const app = await etcd.app({ identity: 'w' });
    const semaphores = app.get(SemaphoreService);
    const watched = semaphores.watch('cache');
    const twoHeld = firstValueFrom(watched.pipe(filter((holders) => holders.length === 2)));
    const [x, y] = [
      await semaphores.acquire('cache', { limit: 2, value: 'x' }),
      await semaphores.acquire('cache', { limit: 2, value: 'y' }),
    ];
    expect((await twoHeld).map((h) => [h.value, h.fencingToken])).toEqual([
      ['x', x.fencingToken],
      ['y', y.fencingToken],
    ]);
    // A third waits; once x leaves, the holders seen are y and z (z may join before or after x leaves).
    const third = semaphores.acquire('cache', { limit: 2, value: 'z' });
    const afterX = firstValueFrom(watched.pipe(filter((holders) => holders.map((h) => h.value).join() === 'y,z')));
    await x.release();
    const z = await third;
    expect((await afterX).map((h) => h.fencingToken)).toEqual([y.fencingToken, z.fencingToken]);
    await Promise.all([y.release(), z.release()]);
  });

  it('3 processes, limit 2: at most 2 inside at once over 300 sections (counted in etcd through fenced writes), each section’s work applied once', async () => {
    await etcd.client.put('sem/inside').value('0');
    const workers = ['p1', 'p2', 'p3'].map((id) => new NodeProcess('test/workers/semaphore-worker.mjs', [etcd.endpoint, '100', id]));
    await Promise.all(workers.map((w) => w.line((l) => l === 'ready')));
    for (const w of workers) w.send('go');
    const codes = await Promise.all(workers.map((w) => w.exited));
    expect(codes).toEqual([0, 0, 0]);
    const sections = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { inside: number; applied: boolean }),
    );
    expect(sections).toHaveLength(300);
    expect(Math.max(...sections.map((s) => s.inside))).toBe(2);
    expect(sections.every((s) => s.applied)).toBe(true);
    expect(await etcd.client.getAll().prefix('sem/done/').count()).toBe(300);
    expect(await etcd.client.get('sem/inside').string()).toBe('0');
    await etcd.client.delete().prefix('sem/');
  }, 60_000);
});
