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
import { EtcdConnection } from '../lib/module/etcd-connection.js';
import { EtcdSessionService } from '../lib/session/session.service.js';
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
    await etcd.client.put(`lock/y/${leaseOf(a)}.9`).value('a').lease(lease).exec();
    // Another instance cannot tell it from a holder…
    expect(await b.get(LockService).tryAcquire('y')).toBeNull();
    // …but this instance can: it removes it and holds.
    const own = await a.get(LockService).tryAcquire('y');
    expect(own?.value).toBe('a');
    expect(await etcd.client.getAll().prefix('lock/y/').keys()).toEqual([own?.key]);
    await own?.release();

    await etcd.client.put(`semaphore/z/${leaseOf(a)}.9-1-of-1`).value('a').lease(lease).exec();
    const permit = await a.get(SemaphoreService).acquire('z', { limit: 1, timeout: 3000 });
    expect(await etcd.client.getAll().prefix('semaphore/z/').keys()).toEqual([permit.key]);
    await permit.release();
  });
});
