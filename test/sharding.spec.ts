import { type INestApplicationContext, Injectable } from '@nestjs/common';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import {
  EtcdLockError,
  EtcdUnavailableError,
  InvalidArgumentError,
  type Shard,
  ShardCountMismatchError,
  Sharded,
  ShardingService,
  ShardLostError,
  type ShardSet,
} from '../lib/index.js';
import { EtcdLockEventName, EtcdLockEvents, EtcdSessionService } from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import type { OwnedShards } from '../lib/sharding/shard-set.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();
const SHARDS = 12;

@Injectable()
class TenantSync {
  readonly runs: ShardSet[] = [];

  @Sharded('tenants', { shards: SHARDS })
  sync(): number[] {
    const set = ShardingService.current() as ShardSet;
    this.runs.push(set);
    return set.shards.map((shard) => shard.index);
  }

  /** A run that lasts until `gate` resolves. */
  @Sharded('tenants', { shards: SHARDS })
  async syncUntil(gate: Promise<void>): Promise<ShardSet> {
    const set = ShardingService.current() as ShardSet;
    await gate;
    return set;
  }
}

const sharding = (app: INestApplicationContext) => app.get(ShardingService);
/** Resolves with the app's shards once `ok(shards)` holds. */
const ownedWhen = (app: INestApplicationContext, ok: (shards: number[]) => boolean, group = 'tenants') =>
  firstValueFrom(sharding(app).owned(group).pipe(filter(ok)));
const replica = (identity: string) => etcd.app({ identity }, [], [TenantSync]);

/** Waits until the replicas' shards are disjoint, cover the group and are balanced; returns each one's shards. */
async function settled(apps: INestApplicationContext[], shards = SHARDS): Promise<number[][]> {
  const floor = Math.floor(shards / apps.length);
  const ceil = Math.ceil(shards / apps.length);
  for (;;) {
    const owned = await Promise.all(apps.map((app) => firstValueFrom(sharding(app).owned('tenants'))));
    const all = owned.flat().sort((a, b) => a - b);
    const balanced = owned.every((list) => list.length === floor || list.length === ceil);
    if (balanced && all.length === shards && all.every((shard, i) => shard === i)) return owned;
    // Wait for any replica's next change (no polling: the observables emit on change).
    await Promise.race(
      apps.map((app, i) =>
        firstValueFrom(
          sharding(app)
            .owned('tenants')
            .pipe(filter((list) => list.join() !== owned[i].join())),
        ),
      ),
    );
  }
}

async function shardKeys(): Promise<Map<number, { value: string; createRevision: bigint }>> {
  const { kvs } = await etcd.client.kv.range({ key: Buffer.from('shard/tenants/'), range_end: Buffer.from('shard/tenants0') });
  const owners = new Map<number, { value: string; createRevision: bigint }>();
  for (const kv of [...kvs].sort((a, b) => Number(BigInt(a.create_revision) - BigInt(b.create_revision)))) {
    const index = Number(kv.key.toString().split('/')[2]);
    if (!owners.has(index)) owners.set(index, { value: kv.value.toString(), createRevision: BigInt(kv.create_revision) });
  }
  return owners;
}

describe('Sharding', () => {
  it('one replica owns every shard; a run sees them with their keys’ create revisions as fencing tokens', async () => {
    const app = await replica('a');
    await ownedWhen(app, (shards) => shards.length === SHARDS);
    const job = app.get(TenantSync);
    expect(job.sync()).toEqual([...Array(SHARDS).keys()]);
    const [set] = job.runs;
    const keys = await shardKeys();
    for (const shard of set.shards) {
      expect(shard.group).toBe('tenants');
      expect(shard.fencingToken).toBe(keys.get(shard.index)?.createRevision);
      expect(keys.get(shard.index)?.value).toBe('a');
      expect(shard.isOwned).toBe(true);
    }
    // The documented hash: MurmurHash3 x86_32, seed 0, of the UTF-8 bytes, mod shards.
    expect(set.shardOf('tenant-42')).toBe(ShardingService.shardOf('tenant-42', SHARDS));
    expect(set.owns('tenant-42')).toBe(true);
    expect(set.tokenFor('tenant-42')).toBe(keys.get(set.shardOf('tenant-42'))?.createRevision);
    expect(ShardingService.current()).toBeUndefined();
    expect(await sharding(app).assignment('tenants')).toEqual(new Map([['a', [...Array(SHARDS).keys()]]]));
  });

  it('three replicas: each owns ⌊S/R⌋ or ⌈S/R⌉ shards, no shard twice, every shard once', async () => {
    const apps = [await replica('a'), await replica('b'), await replica('c')];
    const owned = await settled(apps);
    expect(owned.map((list) => list.length).sort()).toEqual([4, 4, 4]);
    const assignment = await sharding(apps[0]).assignment('tenants');
    expect(new Map([...assignment].sort())).toEqual(
      new Map([
        ['a', owned[0]],
        ['b', owned[1]],
        ['c', owned[2]],
      ]),
    );
    // A run on each sees only its own shards.
    expect(apps.map((app) => app.get(TenantSync).sync())).toEqual(owned);
  });

  it('a joining replica takes only shards that move to it; the others keep theirs', async () => {
    const apps = [await replica('a'), await replica('b'), await replica('c')];
    const before = await settled(apps);
    apps.push(await replica('d'));
    const after = await settled(apps);
    for (let i = 0; i < 3; i++) for (const shard of after[i]) expect(before[i]).toContain(shard);
    expect(after[3]).toHaveLength(3);
  });

  it('a clean stop hands its shards to the others: their signals abort with `shutdown` once the run on them ends', async () => {
    const apps = [await replica('a'), await replica('b'), await replica('c')];
    const [, , mine] = await settled(apps);
    const stopping = apps[2];
    // A run in progress on the stopping replica holds its shards until it ends.
    let finish = () => undefined as void;
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const running = stopping.get(TenantSync).syncUntil(gate) as Promise<ShardSet>;
    const seen = sharding(stopping).snapshot('tenants') as ShardSet;
    expect(seen.shards.map((s) => s.index)).toEqual(mine);
    const closing = stopping.close();
    const reason = await whenAborted(seen.shards[0].signal);
    expect(reason).toBeInstanceOf(ShardLostError);
    expect(reason).toMatchObject({ group: 'tenants', shard: mine[0], reason: 'shutdown' });
    // Not handed over while the run goes on.
    expect((await shardKeys()).get(mine[0])?.value).toBe('c');
    finish();
    expect((await running).shards.map((s) => s.index)).toEqual(mine);
    await closing;
    const rest = await settled(apps.slice(0, 2));
    expect(rest.flat().sort((a, b) => a - b)).toEqual([...Array(SHARDS).keys()]);
  });

  it('a shard key deleted from outside: its signal aborts (`key-deleted`) and the owner takes it again', async () => {
    const app = await replica('a');
    await ownedWhen(app, (shards) => shards.length === SHARDS);
    const set = sharding(app).snapshot('tenants') as ShardSet;
    const shard = set.shards[3] as Shard;
    const keys = await shardKeys();
    const changes = firstValueFrom(
      app.get(EtcdLockEvents).events$.pipe(
        filter((e) => e.type === EtcdLockEventName.ShardsChanged),
        take(2),
        toArray(),
      ),
    );
    await etcd.client.delete().prefix('shard/tenants/3/');
    expect(await whenAborted(shard.signal)).toMatchObject({ reason: 'key-deleted', shard: 3 });
    await ownedWhen(app, (shards) => shards.length === SHARDS);
    const all = [...Array(SHARDS).keys()];
    expect(await changes).toEqual([
      { type: EtcdLockEventName.ShardsChanged, group: 'tenants', shards: all.filter((s) => s !== 3), gained: [], lost: [3] },
      { type: EtcdLockEventName.ShardsChanged, group: 'tenants', shards: all, gained: [3], lost: [] },
    ]);
    const again = (sharding(app).snapshot('tenants') as ShardSet).shards[3];
    expect(again.fencingToken).toBeGreaterThan(keys.get(3)?.createRevision ?? 0n);
  });

  it('a lease revoked from outside: every shard’s signal aborts at the first evidence, its key’s deletion or the session’s end; on the new session it owns them again', async () => {
    const app = await replica('a');
    await ownedWhen(app, (shards) => shards.length === SHARDS);
    const before = (sharding(app).snapshot('tenants') as ShardSet).shards;
    const lease = app.get(EtcdSessionService).status().leaseId as string;
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${lease}`).toString() });
    const reasons = await Promise.all(before.map((shard) => whenAborted(shard.signal)));
    // The revoke deletes every key in one revision, but each shard hears of its own key on its own watch: the first
    // to hear takes its shard again, etcd answers that the lease is gone, and the session ends at once; shards whose
    // delete event had not arrived yet end with it (`session-lost`). Either is the first evidence; nothing waits for
    // a keepalive, and no shard ends for another reason.
    const seen = reasons.map((r) => (r instanceof ShardLostError ? r.reason : String(r)));
    expect(seen.filter((reason) => reason !== 'key-deleted' && reason !== 'session-lost')).toEqual([]);
    expect(app.get(TenantSync).sync()).toBeUndefined(); // owns nothing now: skipped, no request
    await ownedWhen(app, (shards) => shards.length === SHARDS);
    expect(app.get(EtcdSessionService).status().leaseId).not.toBe(lease);
  });

  it('sticky (rebalanceDelayMs): a member that comes back with the same identity gets its shards back, none moved meanwhile', async () => {
    const options = { shards: SHARDS, rebalanceDelayMs: 60_000 };
    const apps = await Promise.all(['a', 'b', 'c'].map((identity) => etcd.app({ identity })));
    for (const app of apps) await sharding(app).join('tenants', options);
    const owned = await settled(apps);
    const seen: number[][][] = [[], []];
    const subscriptions = apps.slice(0, 2).map((app, i) =>
      sharding(app)
        .owned('tenants')
        .subscribe((list) => seen[i].push(list)),
    );
    await apps[2].close();
    const back = await etcd.app({ identity: 'c' });
    await sharding(back).join('tenants', options);
    expect(await ownedWhen(back, (list) => list.length === owned[2].length)).toEqual(owned[2]);
    for (const subscription of subscriptions) subscription.unsubscribe();
    // a and b never owned anything else meanwhile.
    expect(seen).toEqual([[owned[0]], [owned[1]]]);
  });

  it('join/leave without the decorator; owned() follows', async () => {
    const app = await etcd.app({ identity: 'x' });
    const service = sharding(app);
    await service.join('exports', { shards: 4 });
    expect(await firstValueFrom(service.owned('exports').pipe(filter((s) => s.length === 4)))).toEqual([0, 1, 2, 3]);
    await service.leave('exports');
    expect(await firstValueFrom(service.owned('exports'))).toEqual([]);
    const { keys } = await etcd.leftovers();
    expect(keys.filter((key) => !key.startsWith('election/'))).toEqual([]);
  });

  it('leave() not awaited, then join() of the same group: the new shards are taken after the old keys are gone, never lost to them', async () => {
    const app = await etcd.app({ identity: 'x' });
    const service = sharding(app);
    await service.join('exports', { shards: 4 });
    await ownedWhen(app, (s) => s.length === 4, 'exports');
    const running = service.snapshot('exports') as OwnedShards;
    const before = running.shards;
    // A run on the shards: leaving waits for it to end before it deletes their keys.
    let endRun: () => void = () => undefined;
    running.use(new Promise<void>((resolve) => (endRun = resolve)), 0);
    const left = service.leave('exports');
    const joined = service.join('exports', { shards: 4 });
    endRun();
    await Promise.all([left, joined]);
    await ownedWhen(app, (s) => s.length === 4, 'exports');
    const after = (service.snapshot('exports') as ShardSet).shards;
    expect(before.every((shard) => shard.signal.aborted)).toBe(true);
    for (const shard of after) {
      expect(shard.signal.aborted).toBe(false);
      expect(shard.fencingToken).toBeGreaterThan(before[shard.index].fencingToken);
    }
    const keys = await etcd.client.getAll().prefix('shard/exports/').keys();
    expect(keys).toHaveLength(4);
    await service.leave('exports');
  });

  it('leave(): a member key whose delete goes unanswered is deleted again until etcd answers; a member put in doubt is removed when it lands late', async () => {
    const app = await etcd.app({ identity: 'x' });
    const service = sharding(app);
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let withheld: Parameters<typeof txn>[0] | undefined;
    let refused = 0;
    port.txn = async (req, what, timeoutMs) => {
      if (what.startsWith('leave sharding group') && refused++ < 2) throw new EtcdUnavailableError('no answer (test)', [etcd.endpoint]);
      if (withheld || !what.startsWith('join sharding group')) return txn(req, what, timeoutMs);
      withheld = req; // the first member put: no answer (etcd applies it later)
      throw new EtcdUnavailableError('no answer (test)', [etcd.endpoint]);
    };
    await service.join('members', { shards: 2 });
    await ownedWhen(app, (s) => s.length === 2, 'members');
    await service.leave('members');
    expect(refused).toBe(3);
    expect(await etcd.client.getAll().prefix('member/members/').keys()).toEqual([]);
    await txn(withheld as Parameters<typeof txn>[0], 'apply the late member put');
    await etcd.waitForNoKeys('member/members/');
  });

  it('a leave whose delete lands late, after the group was joined again, does not take the new member key', async () => {
    const app = await etcd.app({ identity: 'x' });
    const service = sharding(app);
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    let withheld: Parameters<typeof txn>[0] | undefined;
    port.txn = async (req, what, timeoutMs) => {
      const res = await txn(req, what, timeoutMs);
      // The leave's delete is applied, but its request is also kept, to be applied again later (a duplicate).
      if (!withheld && what.startsWith('leave sharding group')) withheld = req;
      return res;
    };
    await service.join('again', { shards: 2 });
    await ownedWhen(app, (s) => s.length === 2, 'again');
    await service.leave('again');
    await service.join('again', { shards: 2 });
    await ownedWhen(app, (s) => s.length === 2, 'again');
    const members = await etcd.client.getAll().prefix('member/again/').keys();
    expect(members).toHaveLength(1);
    expect((await txn(withheld as Parameters<typeof txn>[0], 'apply the late delete')).succeeded).toBe(false);
    expect(await etcd.client.getAll().prefix('member/again/').keys()).toEqual(members);
    await service.leave('again');
  });

  it('a member declaring another shard count is refused while the group has members with the count in force', async () => {
    const a = await etcd.app({ identity: 'a' });
    await sharding(a).join('exports', { shards: 4 });
    const b = await etcd.app({ identity: 'b' });
    await expect(sharding(b).join('exports', { shards: 8 })).rejects.toThrow(ShardCountMismatchError);
    await expect(sharding(b).join('exports', { shards: 8 })).rejects.toThrow(
      "Sharding group 'exports' has 4 shards in etcd, but this instance declares 8",
    );
    await expect(sharding(a).join('exports', { shards: 5 })).rejects.toThrow(
      "group 'exports' is already declared with 4 shards in this app, not 5",
    );
  });

  it('a record left by a crashed version with another count is replaced by the next member, whatever its identity', async () => {
    // As a replica of the old version (4 shards, identity x) leaves it when SIGKILLed as the last member.
    const stale = { shards: 4, owners: { x: [0, 1, 2, 3] }, leases: { x: '7fffdead' } };
    await etcd.client.put('assignment/exports/current').value(JSON.stringify(stale));
    const app = await etcd.app({ identity: 'x' });
    await sharding(app).join('exports', { shards: 8 });
    expect(
      await firstValueFrom(
        sharding(app)
          .owned('exports')
          .pipe(filter((s) => s.length === 8)),
      ),
    ).toHaveLength(8);
    await sharding(app).leave('exports');
  });

  it('bad input gets a clear error before any request', async () => {
    const app = await etcd.app({ identity: 'x' });
    const service = sharding(app);
    for (const [shards, problem] of [
      [0, 'must be from 1 to 4096, got 0'],
      [4097, 'must be from 1 to 4096, got 4097'],
      [1.5, 'must be an integer, got number 1.5'],
      ['8', "must be an integer, got the string '8'"],
    ] as const) {
      await expect(service.join('g', { shards: shards as number })).rejects.toThrow(`Invalid argument 'options.shards': ${problem}`);
      expect(() => Sharded('g', { shards: shards as number })).toThrow(InvalidArgumentError);
    }
    await expect(service.join('a/b', { shards: 2 })).rejects.toThrow("Invalid argument 'group': must not contain '/'");
    expect(() => Sharded('', { shards: 2 })).toThrow("Invalid argument 'group': must not be empty");
    expect(() => Sharded('g', { shards: 2, minHoldMs: -1 } as never)).toThrow("Invalid argument 'options.minHoldMs'");

    @Injectable()
    class Twice {
      @Sharded('same', { shards: 4 })
      one(): void {}
      @Sharded('same', { shards: 8 })
      two(): void {}
    }
    await expect(etcd.app({ identity: 'y' }, [], [Twice])).rejects.toThrow(
      "Invalid argument 'options.shards': group 'same' is already declared with 4 shards in this app, not 8 (Twice.two)",
    );
    expect(EtcdLockError).toBeDefined();
  });
});
