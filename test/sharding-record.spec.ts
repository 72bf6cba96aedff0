import type { INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdUnavailableError, ShardingService } from '../lib/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { FALLBACK_WRITE_MS } from '../lib/sharding/record-writer.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();
const SHARDS = 12;

/** Each write of the group's assignment record an app sends, and whether its compare held. */
interface RecordWrites {
  readonly by: string[];
  readonly conflicts: string[];
}

/** Records every assignment write of `app` (as `identity`) into `writes`; `refuse`: fail them as etcd unreachable. */
function countWrites(app: INestApplicationContext, identity: string, writes: RecordWrites, refuse = false): void {
  const port = app.get(EtcdConnection).port;
  const txn = port.txn.bind(port);
  port.txn = async (req, what, timeoutMs) => {
    if (!what.startsWith('write the assignment')) return txn(req, what, timeoutMs);
    if (refuse) throw new EtcdUnavailableError('refused by the test', port.endpoints);
    const res = await txn(req, what, timeoutMs);
    (res.succeeded ? writes.by : writes.conflicts).push(identity);
    return res;
  };
}

/** Resolves once the apps own every shard once, balanced. */
function balanced(apps: INestApplicationContext[]): Promise<unknown> {
  return Promise.all(
    apps.map((app) =>
      firstValueFrom(
        app
          .get(ShardingService)
          .owned('tenants')
          .pipe(filter((s) => s.length === Math.floor(SHARDS / apps.length) || s.length === Math.ceil(SHARDS / apps.length))),
      ),
    ),
  ).then(async () => {
    const assignment = await apps[0].get(ShardingService).assignment('tenants');
    if ([...assignment.values()].flat().length !== SHARDS) return balanced(apps);
  });
}

/** An app that joins the group, its record writes counted from the start. */
async function member(identity: string, writes: RecordWrites, refuse = false): Promise<INestApplicationContext> {
  const app = await etcd.app({ identity });
  countWrites(app, identity, writes, refuse);
  await app.get(ShardingService).join('tenants', { shards: SHARDS });
  return app;
}

describe('the assignment record', () => {
  it('is written by the oldest member alone: a change costs one write, and no member’s compare fails', async () => {
    const writes: RecordWrites = { by: [], conflicts: [] };
    const apps: INestApplicationContext[] = [];
    for (const identity of ['a', 'b', 'c', 'd']) apps.push(await member(identity, writes));
    await balanced(apps);
    writes.by.length = 0;
    // A fifth joins and the first leaves: every member sees both changes at once.
    apps.push(await member('e', writes));
    await balanced(apps);
    expect(writes).toEqual({ by: ['a'], conflicts: [] });
    await (apps.shift() as INestApplicationContext).get(ShardingService).leave('tenants');
    await balanced(apps);
    // The next oldest took over writing when the oldest left.
    expect(writes).toEqual({ by: ['a', 'b'], conflicts: [] });
  });

  it('when the oldest cannot write, another member writes once the record stayed stale for the fallback time', async () => {
    const writes: RecordWrites = { by: [], conflicts: [] };
    // The oldest's first write fails too: nothing is written until the other member's wait is over.
    const a = await etcd.app({ identity: 'a' });
    countWrites(a, 'a', writes, true);
    void a
      .get(ShardingService)
      .join('tenants', { shards: SHARDS })
      .catch(() => undefined);
    const started = performance.now();
    const b = await member('b', writes);
    await balanced([a, b]);
    expect(writes.by).toEqual(['b']);
    expect(performance.now() - started).toBeGreaterThanOrEqual(FALLBACK_WRITE_MS);
  });
});
