import { DeletionWatches } from '../../lib/connection/deletion-watches.js';
import { once } from 'node:events';
import { ConsoleLogger } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import { LeaderElectionService, LockLostError, LockService } from '../../lib/index.js';
import { whenAborted } from '../../lib/util/wait-signal.js';
import { etcdctl } from '../harness/etcd.js';
import { useEtcd } from '../harness/fixtures.js';
import { LockWorker } from '../harness/lock-worker.js';
import { TcpProxy } from '../harness/proxy.js';

const etcd = useEtcd();
const realNow = () => performance.timeOrigin + performance.now();

async function worker(identity: string, ttl = 2, hosts = [etcd.endpoint]) {
  const w = new LockWorker(hosts, identity, ttl);
  await w.ready();
  return w;
}

/** Resolves once `key` is deleted (a watch from now on). */
async function deleted(key: string): Promise<void> {
  const watcher = await etcd.client.watch().key(key).create();
  try {
    if ((await etcd.client.get(key).string()) === null) return;
    await once(watcher, 'delete');
  } finally {
    await watcher.cancel();
  }
}

describe('fault scenarios on one etcd node', () => {
  it('1. a holder paused past its TTL: another acquires with a higher token; on resume the old holder is aborted and its fenced write rejected', async () => {
    const holder = await worker('paused-holder');
    const first = await holder.acquire('x');
    expect(first.event).toBe('acquired');
    const locks = (await etcd.app({ ttl: 2 })).get(LockService);
    const waiting = locks.acquire('x');
    holder.pause();
    const lock = await waiting; // after etcd expired the paused holder's lease
    expect(lock.fencingToken).toBeGreaterThan(BigInt(first.token as string));
    const from = holder.process.lines.length;
    holder.resume();
    const aborted = await holder.next('aborted', from);
    expect(aborted.reason).toBe('LockLostError');
    holder.send('write', { key: 'stale-write', value: 'from the old holder' });
    expect(await holder.next('write', from)).toMatchObject({ ok: false, error: 'LockLostError' });
    expect(await etcd.client.get('stale-write').string()).toBeNull();
    await lock.release();
    await holder.close();
  });

  it('2. a waiter whose lease expires while queued rejects, even if its turn came meanwhile', async () => {
    const locks = (await etcd.app({ ttl: 5 })).get(LockService);
    const held = await locks.acquire('q');
    const waiter = await worker('expiring-waiter');
    const acquired = waiter.acquire('q');
    const waiterKey = await firstKeyOf(waiter, 'lock/q/', held.key);
    waiter.pause();
    await deleted(waiterKey); // its lease expired in etcd
    await held.release(); // the paused waiter's watch event now says "your turn"…
    waiter.resume();
    expect(await acquired).toMatchObject({ event: 'acquire-failed', error: 'LockLostError' }); // …but it must not hold
    await waiter.close();
  });

  it('3. when the waiter ahead dies, the next waiter still waits for the holder', async () => {
    const [holderApp, laterApp] = [await etcd.app({ ttl: 5 }), await etcd.app({ ttl: 5 })];
    const held = await holderApp.get(LockService).acquire('chain');
    const ahead = await worker('dying-waiter');
    ahead.acquire('chain').catch(() => undefined); // it is killed before it could answer
    const aheadKey = await firstKeyOf(ahead, 'lock/chain/', held.key);
    let laterHolds = false;
    const later = laterApp
      .get(LockService)
      .acquire('chain')
      .then((lock) => {
        laterHolds = true;
        return lock;
      });
    ahead.process.kill('SIGKILL');
    await deleted(aheadKey);
    // The holder still holds; the next waiter has not been let in by the death of the one ahead.
    expect((await holderApp.get(LockService).holder('chain'))?.key).toBe(held.key);
    expect(laterHolds).toBe(false);
    await held.release();
    const lock = await later;
    expect(lock.fencingToken).toBeGreaterThan(held.fencingToken);
    await lock.release();
  });

  it('6. a client cut off from etcd aborts its lock and ends its leadership before another instance can take them', async () => {
    const proxy = await TcpProxy.start(etcd.endpoint);
    try {
      const cutApp = await etcd.app({ hosts: proxy.endpoint, ttl: 2, identity: 'cut', requestTimeout: 500 });
      await firstValueFrom(cutApp.get(LeaderElectionService).changes().pipe(filter(Boolean)));
      const lock = await cutApp.get(LockService).acquire('p');
      const otherApp = await etcd.app({ ttl: 2, identity: 'other' });
      let abortedAt = 0;
      let leadershipEndedAt = 0;
      void whenAborted(lock.signal).then(() => (abortedAt = realNow()));
      cutApp
        .get(LeaderElectionService)
        .changes()
        .pipe(filter((leader) => !leader))
        .subscribe(() => (leadershipEndedAt ||= realNow()));
      const otherLeads = firstValueFrom(otherApp.get(LeaderElectionService).changes().pipe(filter(Boolean)));
      const otherLock = otherApp.get(LockService).acquire('p');
      proxy.cut();
      await otherLock.then(() => undefined);
      const otherAcquiredAt = realNow();
      await otherLeads;
      const otherLedAt = realNow();
      expect(abortedAt).toBeGreaterThan(0);
      expect(abortedAt).toBeLessThan(otherAcquiredAt);
      expect(lock.signal.reason).toBeInstanceOf(LockLostError);
      expect(leadershipEndedAt).toBeGreaterThan(0);
      expect(leadershipEndedAt).toBeLessThan(otherLedAt);
      await (await otherLock).release();
      proxy.restore();
      await firstValueFrom(
        cutApp
          .get(LeaderElectionService)
          .changes()
          .pipe(filter((l) => !l)),
      );
    } finally {
      proxy.restore();
      await closeAppsThenProxy(proxy);
    }
  });

  it('8. etcd compacts the history a waiter and an observer must replay: they resync and carry on', async () => {
    const proxy = await TcpProxy.start(etcd.endpoint);
    try {
      const holderApp = await etcd.app({ ttl: 5, identity: 'holder' });
      const warnings: string[] = [];
      const logger = new (class extends ConsoleLogger {
        override warn(message: unknown) {
          warnings.push(String(message));
        }
        override log() {}
        override error() {}
      })();
      const waiterApp = await etcd.app({ hosts: proxy.endpoint, ttl: 5, identity: 'waiter' }, [], [], logger);
      const held = await holderApp.get(LockService).acquire('c');
      const waiting = waiterApp.get(LockService).acquire('c');
      const holders: Array<string | null> = [];
      let seen: () => void = () => {};
      const observer = waiterApp
        .get(LockService)
        .watch('c')
        .subscribe((h) => {
          holders.push(h ? h.value : null);
          seen();
        });
      await firstKeyOf(undefined, 'lock/c/', held.key);
      await new Promise<void>((resolve) => {
        seen = () => holders.length >= 1 && resolve();
        seen();
      });
      // The waiter watches the holder's key (etcd confirmed it) before its connection is cut while the holder
      // releases and etcd compacts that history away.
      expect(await waiterApp.get(DeletionWatches).of('lock').watching(held.key)).toBe(true);
      proxy.cut();
      await held.release();
      for (let i = 0; i < 20; i++) await etcd.client.put('filler').value(String(i));
      const { header } = await etcd.client.kv.range({ key: Buffer.from('filler') });
      await etcd.client.kv.compact({ revision: header.revision, physical: true });
      await etcd.client.delete().key('filler');
      // Its connections drop and come back: its watches resume from a compacted revision, etcd refuses them,
      // and the library must re-read the queue and the holder instead of waiting forever.
      proxy.reset();
      proxy.restore();
      const lock = await waiting;
      expect(lock.isHeld).toBe(true);
      await new Promise<void>((resolve) => {
        seen = () => holders[holders.length - 1] === 'waiter' && resolve();
        seen();
      });
      expect(holders[0]).toBe('holder');
      // The compaction path was taken: etcd cancelled the resumed watch (3.4 sends no reason, only the compact
      // revision) and the library restarted it and re-read the queue.
      expect(warnings.some((w) => w.includes('Watch on lock keys restarted'))).toBe(true);
      observer.unsubscribe();
      await lock.release();
    } finally {
      proxy.restore();
      await closeAppsThenProxy(proxy);
    }
  });

  it('7. a lease revoked and a key deleted from outside (etcdctl): the holder knows within a second', async () => {
    // Measured from the moment etcdctl returns, when etcd has surely applied the change: the promise is about
    // the library noticing, not about how long an etcdctl process takes to start (it blocks this thread, so the
    // abort cannot be handled earlier).
    const locks = (await etcd.app({ ttl: 10 })).get(LockService);
    const byRevoke = await locks.acquire('r1');
    const revokeAborted = whenAborted(byRevoke.signal).then(() => realNow());
    etcdctl(etcd.endpoint, 'lease', 'revoke', byRevoke.key.split('/').pop() as string);
    const revoked = realNow();
    expect((await revokeAborted) - revoked).toBeLessThan(1000);

    const app2 = await etcd.app({ ttl: 10 });
    const byDelete = await app2.get(LockService).acquire('r2');
    const deleteAborted = whenAborted(byDelete.signal).then(() => realNow());
    etcdctl(etcd.endpoint, 'del', byDelete.key);
    const deleted = realNow();
    expect((await deleteAborted) - deleted).toBeLessThan(1000);
    await byDelete.release();
  });
});

/** The key a worker queued under `prefix` (other than `except`), once it exists. */
async function firstKeyOf(w: LockWorker | undefined, prefix: string, except: string): Promise<string> {
  const watcher = await etcd.client.watch().prefix(prefix).create();
  try {
    for (;;) {
      const keys = (await etcd.client.getAll().prefix(prefix).keys()).filter((k) => k !== except);
      if (keys.length > 0) return keys[0];
      await once(watcher, 'put');
    }
  } finally {
    await watcher.cancel();
    void w;
  }
}

async function closeAppsThenProxy(proxy: TcpProxy): Promise<void> {
  // The fixture closes the apps after the test; the proxy must outlive them so they can revoke their leases.
  afterEachQueue.push(() => proxy.close());
}
const afterEachQueue: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const fn of afterEachQueue.splice(0)) await fn();
});
