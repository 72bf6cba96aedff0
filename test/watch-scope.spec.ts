import type { INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import type { PortWatcher } from '../lib/etcd/etcd-port.js';
import {
  type EtcdLockOptions,
  LeaderElectionService,
  LockLostError,
  LockService,
  ReadWriteLockService,
  SemaphoreService,
} from '../lib/index.js';
import { ManualClock } from '../lib/testing/index.js';
import { Etcd3 } from 'etcd3';
import { EtcdRpc } from '../lib/etcd/etcd-rpc.js';
import { DeletionWatches } from '../lib/connection/deletion-watches.js';
import { DeleteWatch } from '../lib/queue/delete-watch.js';
import { etcdMetric, grpcCounts } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';
import { whenAborted } from '../lib/util/wait-signal.js';

const etcd = useEtcd();

const metric = (name: string) => etcdMetric(etcd.endpoint, name);

/** An app whose default election settled (campaigning starts at bootstrap, its key's watch after the join). */
async function settledApp(options: EtcdLockOptions = {}) {
  const app = await etcd.app(options);
  await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));
  // The leader's own watch (a holder's) is made after a delay on the app's clock: on a clock that stands still, never.
  const watches = app.get(DeletionWatches).of('election');
  if (!options.clock) await watches.watching(watches.watchedKeys()[0]);
  return app;
}

const watchMessages = async () => (await grpcCounts([etcd.endpoint])).get('Watch') ?? 0;

describe('deletion watches scoped to interest', () => {
  it("an instance is sent no event for other instances' locks: each release reaches its own holder only", async () => {
    // Two idle instances (a session and their election watch) and one busy one, on 30 different names.
    const idle = [await etcd.app({ identity: 'idle-1' }), await etcd.app({ identity: 'idle-2' })];
    const busy = await etcd.app({ identity: 'busy' });
    const locks = busy.get(LockService);
    const before = await metric('etcd_debugging_mvcc_events_total');
    for (let i = 0; i < 30; i++) await (await locks.acquire(`order:${i}`)).release();
    // Each cycle's deletion went to the busy instance's watch of that name (its own release), to no one else.
    const sent = (await metric('etcd_debugging_mvcc_events_total')) - before;
    expect(sent).toBeLessThanOrEqual(30);
    for (const app of idle) expect(app.get(DeletionWatches).of('lock').size).toBe(0);
  });

  it('a watch stays open between cycles (no message), and goes after 8 holds in a row with no waiter', async () => {
    const rpc = new EtcdRpc(new Etcd3({ hosts: etcd.endpoint }), [etcd.endpoint], 2000);
    const deletes = new DeleteWatch(rpc, 'lock/', () => undefined);
    const subscriber = { onDelete: () => undefined, onGap: () => undefined };
    const { header } = await etcd.client.kv.range({ key: Buffer.from('lock/') });
    const cycle = async (holder: boolean) => {
      deletes.subscribe('lock/hot/1', subscriber, BigInt(header.revision) + 1n, holder);
      expect(await deletes.watching('lock/hot/1')).toBe(true);
      deletes.unsubscribe('lock/hot/1', subscriber);
    };
    await cycle(false); // a waiter: its watch lingers…
    expect(deletes.size).toBe(1);
    const before = await watchMessages();
    await cycle(false); // …and serves the next cycle without a message
    expect(await watchMessages()).toBe(before);
    for (let i = 1; i < 8; i++) {
      await cycle(true); // holders reuse it…
      expect(deletes.size).toBe(1);
    }
    await cycle(true); // …until the 8th in a row with no waiter: then it goes
    expect(deletes.size).toBe(0);
    await deletes.close();
    rpc.close();
  });

  it("a permit's or a read lock's watch goes with its hold: their keys are named by a sequence and never return", async () => {
    const app = await settledApp();
    const holds = [
      { kind: 'semaphore' as const, take: () => app.get(SemaphoreService).acquire('pool', { limit: 2 }) },
      { kind: 'rwlock' as const, take: () => app.get(ReadWriteLockService).acquireRead('doc') },
      { kind: 'rwlock' as const, take: () => app.get(ReadWriteLockService).acquireWrite('doc') },
    ];
    for (const { kind, take } of holds) {
      const deletes = app.get(DeletionWatches).of(kind);
      const hold = await take();
      // Held past the holder's delay: its own key's watch is made and confirmed.
      const [key] = deletes.watchedKeys();
      expect(await deletes.watching(key)).toBe(true);
      await hold.release();
      expect(deletes.size).toBe(0);
    }
    // A lock's key name returns at its next take: its watch stays for it (see the test above).
    const lock = await app.get(LockService).acquire('again');
    const locks = app.get(DeletionWatches).of('lock');
    expect(await locks.watching(locks.watchedKeys()[0])).toBe(true);
    await lock.release();
    expect(locks.size).toBe(1);
  });

  it('a hold that ends before its watch is due costs no watch at all: no create, no cancel, no event', async () => {
    // A holder's watch is due on the module's clock, which stands still here: every hold below is shorter.
    const app = await settledApp({ clock: new ManualClock(), ttl: 60 });
    const deletes = app.get(DeletionWatches).of('lock');
    const locks = app.get(LockService);
    const before = await watchMessages();
    const eventsBefore = await metric('etcd_debugging_mvcc_events_total');
    for (let i = 0; i < 20; i++) await (await locks.acquire(i % 2 ? 'brief' : `brief:${i}`)).release();
    expect(await watchMessages()).toBe(before);
    expect(await metric('etcd_debugging_mvcc_events_total')).toBe(eventsBefore);
    expect(deletes.size).toBe(0);
  });

  it("holders' watches share one timer per kind, and each is made once its own hold is 20 ms old (every kind)", async () => {
    const clock = new ManualClock();
    const app = await settledApp({ clock, ttl: 60 });
    await clock.advance(20); // the election's own watch, due like any holder's
    const kinds = [
      { kind: 'lock' as const, take: (i: number) => app.get(LockService).acquire(`timed-${i}`) },
      { kind: 'semaphore' as const, take: () => app.get(SemaphoreService).acquire('timed', { limit: 2 }) },
      { kind: 'rwlock' as const, take: (i: number) => app.get(ReadWriteLockService).acquireRead(`timed-${i}`) },
    ];
    const timers = clock.pending;
    const watchers = await metric('etcd_debugging_mvcc_watcher_total');
    const first = await Promise.all(kinds.map(({ take }) => take(1)));
    await clock.advance(10);
    const second = await Promise.all(kinds.map(({ take }) => take(2)));
    // Two holds of each kind in wait, one timer for each kind, no watch yet.
    expect(clock.pending).toBe(timers + kinds.length);
    expect(await metric('etcd_debugging_mvcc_watcher_total')).toBe(watchers);
    await clock.advance(10); // the first holds are 20 ms old, the second 10
    for (const [i, { kind }] of kinds.entries()) {
      expect(await app.get(DeletionWatches).of(kind).watching(first[i].key)).toBe(true);
    }
    expect(await metric('etcd_debugging_mvcc_watcher_total')).toBe(watchers + kinds.length);
    expect(clock.pending).toBe(timers + kinds.length); // each timer set again, for the second hold
    await clock.advance(10);
    for (const [i, { kind }] of kinds.entries()) {
      expect(await app.get(DeletionWatches).of(kind).watching(second[i].key)).toBe(true);
    }
    expect(await metric('etcd_debugging_mvcc_watcher_total')).toBe(watchers + 2 * kinds.length);
    expect(clock.pending).toBe(timers); // nothing more is due
    await Promise.all([...first, ...second].map((hold) => hold.release()));
  });

  it('a watch made after a deletion replays it: the holder whose key went meanwhile is told', async () => {
    // A holder's watch is due on the module's clock: it stands still here until the test moves it.
    const clock = new ManualClock();
    const app = await settledApp({ clock, ttl: 60 });
    const semaphores = app.get(SemaphoreService);
    const watchers = await metric('etcd_debugging_mvcc_watcher_total');
    const first = await semaphores.acquire('pool', { limit: 1 });
    expect(await metric('etcd_debugging_mvcc_watcher_total')).toBe(watchers);
    await etcd.client.delete().key(first.key); // deleted from outside while no watch of the key exists
    const other = await (await etcd.app({ identity: 'other' })).get(SemaphoreService).acquire('pool', { limit: 1 });
    expect(first.isHeld).toBe(true); // not known here yet
    await clock.advance(1000); // the holder's watch is made now, from its join on
    expect(await whenAborted(first.signal)).toMatchObject({ reason: 'key-deleted' });
    expect(first.signal.reason).toBeInstanceOf(LockLostError);
    await other.release();
    await first.release();
  });
});

/**
 * Holds back the creation of `app`'s lock watches until `open()`: each is made on etcd then, "from now", as if the
 * stream had been slow, so the revisions between the join and the watch are the ones it may have missed.
 */
function slowWatches(app: INestApplicationContext) {
  const port = app.get(EtcdConnection).port;
  const original = port.watch;
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  const checks: string[] = [];
  const txn = port.txn;
  port.txn = (req, what, timeoutMs) => {
    if (what === "check the keys 'g' waits for") checks.push(what);
    return txn.call(port, req, what, timeoutMs);
  };
  port.watch = (req, sink) => {
    if (!req.prefix.startsWith('lock/')) return original.call(port, req, sink);
    let real: PortWatcher | undefined;
    let cancelled = false;
    void opened.then(() => {
      if (!cancelled) real = original.call(port, req, sink);
    });
    return {
      cancel: async () => {
        cancelled = true;
        await real?.cancel();
      },
    };
  };
  return { open, checks };
}

describe('a waiter whose watches start after keys went', () => {
  it('reads the keys it waits for once etcd says revisions passed: the holder gone meanwhile gives it its turn', async () => {
    const [holderApp, waiterApp] = [await etcd.app({ identity: 'holder' }), await etcd.app({ identity: 'waiter' })];
    const held = await holderApp.get(LockService).acquire('g');
    const slow = slowWatches(waiterApp);
    const waiting = waiterApp.get(LockService).acquire('g');
    await etcd.waitForKeys('lock/g/', 2);
    await held.release(); // nobody watches the holder's key for the waiter yet
    slow.open();
    const lock = await waiting;
    expect(lock.isHeld).toBe(true);
    // The watches started after the release: its turn came from the read, not from an event.
    expect(slow.checks.length).toBeGreaterThanOrEqual(1);
    await lock.release();
  });

  it('does not take its turn when the same read finds its own key deleted: it is told it lost it', async () => {
    const [holderApp, waiterApp] = [await etcd.app({ identity: 'holder' }), await etcd.app({ identity: 'waiter' })];
    const held = await holderApp.get(LockService).acquire('g');
    const slow = slowWatches(waiterApp);
    const waiting = waiterApp
      .get(LockService)
      .acquire('g')
      .catch((err: unknown) => err);
    const [, mine] = await etcd
      .waitForKeys('lock/g/', 2)
      .then((keys) => keys.sort((a, b) => (a === held.key ? -1 : b === held.key ? 1 : 0)));
    await etcd.client.delete().key(mine); // its own key, from outside, before any watch of it exists
    await held.release();
    slow.open();
    expect(await waiting).toMatchObject({ name: LockLostError.name, reason: 'key-deleted' });
    expect(await etcd.client.getAll().prefix('lock/').keys()).toEqual([]);
  });
});
