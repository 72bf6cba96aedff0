import type { INestApplicationContext } from '@nestjs/common';
import type { ITxnRequest } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdUnavailableError,
  LeaderElectionService,
  LockService,
  LockTimeoutError,
  ReadWriteLockService,
  SemaphoreService,
  ShardingService,
} from '../lib/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { EtcdSessionService } from '../lib/session/session.service.js';
import type { OwnedShards } from '../lib/sharding/shard-set.js';
import { useEtcd } from './harness/fixtures.js';

/*
 * Every write is in doubt until answered. Here a join of each kind of hold gets no answer (the test withholds it
 * and says etcd did not answer), its caller gives up, and only then does etcd apply it (the test sends it late):
 * the key it puts on the instance's lease belongs to no caller. It must be removed at once, and the name must be
 * free for everyone, this instance included, without waiting for the session to end.
 */
const etcd = useEtcd();

/** Withholds every join of `app` until `deliver()` sends them, each as etcd would apply a late request. */
function withholdJoins(app: INestApplicationContext) {
  const port = app.get(EtcdConnection).port;
  const txn = port.txn.bind(port);
  const withheld: ITxnRequest[] = [];
  let firstWithheld: () => void = () => undefined;
  const first = new Promise<void>((resolve) => (firstWithheld = resolve));
  port.txn = async (req, what, timeoutMs) => {
    if (!what.startsWith('join the queue of')) return txn(req, what, timeoutMs);
    withheld.push(req);
    firstWithheld();
    throw new EtcdUnavailableError(`etcd did not answer when trying to ${what} (withheld by the test)`, [etcd.endpoint]);
  };
  return {
    /** Resolves once a join was withheld. */
    first,
    get count() {
      return withheld.length;
    },
    /** Answers joins from now on, and applies the withheld ones (late). */
    async deliver() {
      port.txn = txn;
      for (const req of withheld.splice(0)) await txn(req, 'apply a late join');
    },
  };
}

const leaseOf = (app: INestApplicationContext) => app.get(EtcdSessionService).status().leaseId as string;

describe('a join whose answer is lost, applied after its caller gave up, strands nothing', () => {
  it('lock, tryAcquire: the late key is removed, and the name is free for another instance and for this one', async () => {
    const a = await etcd.app({ identity: 'a' });
    const b = await etcd.app({ identity: 'b' });
    const joins = withholdJoins(a);
    await expect(a.get(LockService).tryAcquire('x')).rejects.toThrow(EtcdUnavailableError);
    await joins.deliver();
    await etcd.waitForNoKeys('lock/x/');
    const other = await b.get(LockService).tryAcquire('x');
    expect(other?.value).toBe('b');
    await other?.release();
    const own = await a.get(LockService).tryAcquire('x');
    expect(own?.value).toBe('a');
    await own?.release();
  });

  it('lock: when etcd does not answer the delete of the late key, it is sent again until it does', async () => {
    const a = await etcd.app({ identity: 'a' });
    const port = a.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let refused = 0;
    port.txn = async (req, what, timeoutMs) => {
      if (what.startsWith('remove a stale key') && refused++ < 2) throw new EtcdUnavailableError('no answer (test)', [etcd.endpoint]);
      return txn(req, what, timeoutMs);
    };
    const joins = withholdJoins(a);
    await expect(a.get(LockService).tryAcquire('x')).rejects.toThrow(EtcdUnavailableError);
    await joins.deliver();
    await etcd.waitForNoKeys('lock/x/');
    expect(refused).toBe(3);
  });

  it('lock, acquire with a timeout: every join it tried is removed when applied late', async () => {
    const a = await etcd.app({ identity: 'a' });
    const b = await etcd.app({ identity: 'b' });
    const joins = withholdJoins(a);
    await expect(a.get(LockService).acquire('x', { timeout: 300 })).rejects.toThrow(LockTimeoutError);
    expect(joins.count).toBeGreaterThan(0);
    await joins.deliver();
    await etcd.waitForNoKeys('lock/x/');
    await (await b.get(LockService).acquire('x', { timeout: 3000 })).release();
    await (await a.get(LockService).acquire('x', { timeout: 3000 })).release();
  });

  it('semaphore permit: the late permit is removed, so no permit is lost for good', async () => {
    const a = await etcd.app({ identity: 'a' });
    const joins = withholdJoins(a);
    await expect(a.get(SemaphoreService).tryAcquire('s', { limit: 1 })).rejects.toThrow(EtcdUnavailableError);
    await joins.deliver();
    await etcd.waitForNoKeys('semaphore/s/');
    const permit = await a.get(SemaphoreService).tryAcquire('s', { limit: 1 });
    expect(permit).not.toBeNull();
    await permit?.release();
  });

  it('read/write lock: a late writer key is removed, and readers are not held back by it', async () => {
    const a = await etcd.app({ identity: 'a' });
    const b = await etcd.app({ identity: 'b' });
    const joins = withholdJoins(a);
    await expect(a.get(ReadWriteLockService).tryAcquireWrite('rw')).rejects.toThrow(EtcdUnavailableError);
    await joins.deliver();
    await etcd.waitForNoKeys('rwlock/rw/');
    const reader = await b.get(ReadWriteLockService).tryAcquireRead('rw');
    expect(reader).not.toBeNull();
    await reader?.release();
  });

  it('read lock: a join applied whose answer is lost is sent again and keeps the first put as its place', async () => {
    const a = await etcd.app({ identity: 'a' });
    const port = a.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let appliedAt: string | undefined;
    // The first join reaches etcd and is applied; its answer is lost.
    port.txn = async (req, what, timeoutMs) => {
      if (appliedAt !== undefined || !what.startsWith('join the queue of')) return txn(req, what, timeoutMs);
      appliedAt = (await txn(req, what, timeoutMs)).header.revision;
      throw new EtcdUnavailableError(`etcd did not answer when trying to ${what} (answer dropped by the test)`, [etcd.endpoint]);
    };
    const reader = await a.get(ReadWriteLockService).acquireRead('doc', { timeout: 5000 });
    // The retry put the same key again: its create revision is still the first put's, and so is the token.
    const keys = await etcd.client.getAll().prefix('rwlock/doc/').exec();
    expect(keys.kvs.map((kv) => kv.key.toString())).toEqual([reader.key]);
    expect(keys.kvs[0].create_revision).toBe(appliedAt);
    expect(reader.fencingToken).toBe(BigInt(appliedAt as string));
    await reader.release();
    await etcd.waitForNoKeys('rwlock/doc/');
  });

  it('election: a campaign whose first join is lost leads with one key; the late key is removed', async () => {
    const a = await etcd.app({ identity: 'a' });
    const joins = withholdJoins(a);
    const elections = a.get(LeaderElectionService);
    const leading = firstValueFrom(elections.changes('e').pipe(filter(Boolean)));
    // The campaign retries after the lost join; let the retries through once the first is withheld.
    await joins.first;
    await joins.deliver();
    await leading;
    // The late key (the first name, retired) goes; the leader's key (the next name) stays.
    const late = `election/e/${leaseOf(a)}`;
    const left = await etcd.keysWhen('election/e/', (keys) => !keys.includes(late));
    expect(left).toEqual([`${late}.1`]);
    expect(await a.get(LeaderElectionService).leader('e')).toBe('a');
  });

  it('shard slot: a lost join is retried under a new name; the late key is removed and the shard is owned once', async () => {
    const a = await etcd.app({ identity: 'a' });
    const joins = withholdJoins(a);
    const sharding = a.get(ShardingService);
    const joined = sharding.join('g', { shards: 1 });
    await joins.first;
    await joins.deliver();
    await joined;
    await firstValueFrom(sharding.owned('g').pipe(filter((shards) => shards.length === 1)));
    const keys = await etcd.client.getAll().prefix('shard/g/0/').keys();
    expect(keys).toEqual([`shard/g/0/${leaseOf(a)}.1`]);
    await sharding.leave('g');
  });
});

describe("this instance never counts its own orphan key as someone else's", () => {
  it('a key on our lease that no caller of ours owns is stale: tryAcquire and acquire remove it and take the name', async () => {
    const a = await etcd.app({ identity: 'a' });
    const b = await etcd.app({ identity: 'b' });
    const lease = BigInt(`0x${leaseOf(a)}`).toString();
    // As a join of ours applied after its caller gave up would leave it (under a name no caller here uses).
    await etcd.client
      .put(`lock/y/${leaseOf(a)}.9`)
      .value('a')
      .lease(lease)
      .exec();
    // Another instance cannot tell it from a holder…
    expect(await b.get(LockService).tryAcquire('y')).toBeNull();
    // …but this instance can: it removes it and holds.
    const own = await a.get(LockService).tryAcquire('y');
    expect(own?.value).toBe('a');
    expect(await etcd.client.getAll().prefix('lock/y/').keys()).toEqual([own?.key]);
    await own?.release();

    await etcd.client
      .put(`semaphore/z/${leaseOf(a)}.9-1-of-1`)
      .value('a')
      .lease(lease)
      .exec();
    const permit = await a.get(SemaphoreService).acquire('z', { limit: 1, timeout: 3000 });
    expect(await etcd.client.getAll().prefix('semaphore/z/').keys()).toEqual([permit.key]);
    await permit.release();
  });
});

/** Something that commits fenced transactions: a lock, a permit, a read/write lock, a term, a shard. */
interface Fenced {
  fencedTxn(): { put(key: string, value: string): { commit(): Promise<{ succeeded: boolean }> } };
}

const holders: Array<[string, (app: INestApplicationContext) => Promise<{ holder: Fenced; done: () => Promise<unknown> }>]> = [
  [
    'lock',
    async (app) => {
      const lock = await app.get(LockService).acquire('f');
      return { holder: lock, done: () => lock.release() };
    },
  ],
  [
    'semaphore permit',
    async (app) => {
      const permit = await app.get(SemaphoreService).acquire('f', { limit: 2 });
      return { holder: permit, done: () => permit.release() };
    },
  ],
  [
    'write lock',
    async (app) => {
      const lock = await app.get(ReadWriteLockService).acquireWrite('f');
      return { holder: lock, done: () => lock.release() };
    },
  ],
  [
    'leadership term',
    async (app) => {
      const elections = app.get(LeaderElectionService);
      await elections.campaign('f');
      return { holder: elections.term('f') as Fenced, done: () => elections.resign('f') };
    },
  ],
  [
    'shard',
    async (app) => {
      const sharding = app.get(ShardingService);
      await sharding.join('f', { shards: 1 });
      await firstValueFrom(sharding.owned('f').pipe(filter((owned) => owned.length === 1)));
      const shard = (sharding.snapshot('f') as OwnedShards).shards[0];
      return { holder: shard, done: () => sharding.leave('f') };
    },
  ],
];

describe("a holder's own fenced write in doubt never lands after its later ones", () => {
  it.each(holders)('%s: a write withheld, then applied after a later one, changes nothing', async (_, hold) => {
    const app = await etcd.app({ identity: 'a' });
    const { holder, done } = await hold(app);
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let withheld: ITxnRequest | undefined;
    port.txn = async (req, what, timeoutMs) => {
      if (withheld || what !== 'commit a fenced transaction') return txn(req, what, timeoutMs);
      withheld = req;
      throw new EtcdUnavailableError('etcd did not answer (withheld by the test)', [etcd.endpoint]);
    };
    await expect(holder.fencedTxn().put('data/f', 'first').commit()).rejects.toThrow(EtcdUnavailableError);
    expect((await holder.fencedTxn().put('data/f', 'second').commit()).succeeded).toBe(true);
    // etcd applies the first write only now: its fence no longer holds, although the holder still holds.
    expect((await txn(withheld as ITxnRequest, 'apply the late write')).succeeded).toBe(false);
    expect(await etcd.client.get('data/f').string()).toBe('second');
    await done();
    await etcd.client.delete().key('data/f');
  });

  it.each(holders)('%s: a write in doubt that lands before the next one is ordered before it', async (_, hold) => {
    const app = await etcd.app({ identity: 'a' });
    const { holder, done } = await hold(app);
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let late = false;
    port.txn = async (req, what, timeoutMs) => {
      if (late || what !== 'commit a fenced transaction') return txn(req, what, timeoutMs);
      late = true;
      // Applied by etcd, but the answer is lost.
      await txn(req, what, timeoutMs);
      throw new EtcdUnavailableError('etcd did not answer (the answer lost by the test)', [etcd.endpoint]);
    };
    await expect(holder.fencedTxn().put('data/f', 'first').commit()).rejects.toThrow(EtcdUnavailableError);
    expect(await etcd.client.get('data/f').string()).toBe('first');
    expect((await holder.fencedTxn().put('data/f', 'second').commit()).succeeded).toBe(true);
    expect(await etcd.client.get('data/f').string()).toBe('second');
    await done();
    await etcd.client.delete().key('data/f');
  });
});
