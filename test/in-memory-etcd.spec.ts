import { CompareResult, CompareTarget, type IRequestOp, SortOrder, SortTarget } from 'etcd3';
import type { EtcdPort } from '../lib/etcd/etcd-port.js';
import { EtcdRpc } from '../lib/etcd/etcd-rpc.js';
import { joinRequest } from '../lib/queue/queue-requests.js';
import { InMemoryEtcd } from '../lib/testing/index.js';
import { useEtcd } from './harness/fixtures.js';

/**
 * The in-memory etcd of the testing module must answer as etcd does. The same script of requests through the
 * library's port to etcd (every shape the library sends, and the errors it relies on) runs against a real etcd
 * (the etcd3 port, `EtcdRpc`) and against `InMemoryEtcd`; after renaming revisions (relative to the start) and
 * lease ids (by first appearance), the transcripts must be equal.
 */
const etcd = useEtcd();

const b = (s: string) => Buffer.from(s);
const end = (prefix: string) => b(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1));

async function script(port: EtcdPort): Promise<unknown[]> {
  const log: unknown[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      log.push([what, await fn()]);
    } catch (err) {
      log.push([what, 'error', (err as Error).constructor.name, (err as Error).cause?.constructor.name]);
    }
  };
  const base = BigInt((await port.range({ key: b('t/') }, 'read')).header.revision);
  const put = (key: string, value: string, extra = {}) =>
    port.txn({ compare: [], success: [{ request_put: { key: b(key), value: b(value), ...extra } }], failure: [] }, 'put');
  log.push(['base', base.toString()]);

  // Watches from the next revision: one for deletions only (as the library's), one for everything.
  const deletes: unknown[] = [];
  const all: unknown[] = [];
  const watchFrom = base + 1n;
  // The newest revision each watcher reported, and waits for it to reach one (told by the watcher's events).
  const seen = new Map<unknown[], bigint>();
  const waits: Array<() => void> = [];
  const sink = (events: unknown[]) => {
    let connected: () => void = () => undefined;
    const created = new Promise<void>((resolve) => (connected = resolve));
    const watcher = port.watch(
      { prefix: 't/', startRevision: watchFrom, onlyDeletes: events === deletes },
      {
        connected,
        event: (type, kv) => {
          events.push([type, kv]);
          seen.set(events, BigInt(kv.mod_revision));
          for (const wait of waits.splice(0)) wait();
        },
        error: (err) => events.push(['error', err]),
      },
    );
    return { watcher, created };
  };
  const seenUpTo = (events: unknown[], revision: bigint): Promise<void> =>
    (seen.get(events) ?? 0n) >= revision
      ? Promise.resolve()
      : new Promise<void>((resolve) => waits.push(resolve)).then(() => seenUpTo(events, revision));
  const deleteWatch = sink(deletes);
  const allWatch = sink(all);
  await Promise.all([deleteWatch.created, allWatch.created]);

  // Ids chosen, as the library does (they also fix the order of the keys named after them).
  const a = await port.leaseGrant('7340000000000000001', 30, 5000);
  const c = await port.leaseGrant('7340000000000000002', 30, 5000);
  const any = await port.leaseGrant('0', 7, 5000);
  await port.leaseRevoke(any.ID);
  log.push(['grant', a, c, any.TTL, any.ID !== '0']);
  const queue = 't/lock/q/';
  const join = (lease: string, onlyIfFree: boolean) => {
    const put: IRequestOp = { request_put: { key: b(queue + lease), value: b('held'), lease } };
    const byCreate = { key: b(queue), range_end: end(queue), sort_order: SortOrder.Ascend, sort_target: SortTarget.Create };
    return port.txn(
      {
        compare: [
          { key: b(queue), range_end: end(queue), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: '0' },
        ],
        success: [put],
        failure: onlyIfFree
          ? [{ request_range: { ...byCreate, limit: 1, keys_only: true } }]
          : [put, { request_range: { ...byCreate, keys_only: true } }],
      },
      'join',
    );
  };
  await step('join free', () => join(a.ID, false));
  await step('join taken', () => join(c.ID, false));
  await step('join again', () => join(c.ID, false));
  await step('try taken', () => join(c.ID, true));
  // A reader's join (the library's request): it compares and reads the writers' range only, and its own key.
  const readerJoin = (lease: string, onlyIfFree: boolean) =>
    port.txn(joinRequest(b('t/rw/write/'), b(`t/rw/read/${lease}`), 'r', lease, onlyIfFree, true), 'join');
  await step('reader join, no writer', () => readerJoin(a.ID, false));
  await step('reader join again', () => readerJoin(a.ID, false));
  await step('writer join behind the reader', () => port.txn(joinRequest(b('t/rw/'), b(`t/rw/write/${c.ID}`), 'w', c.ID, false), 'join'));
  await step('reader join behind a writer', () => readerJoin(c.ID, false));
  await step('reader try behind a writer, key there', () => readerJoin(a.ID, true));
  await step('reader try behind a writer, no key', () => readerJoin('7', true));
  await step('put', () => put('t/x', '1'));
  await step('put again', () => put('t/x', '2', { prev_kv: true }));
  const ranges = {
    all: {},
    limit: { limit: 1 },
    'by create, keys only': { sort_target: SortTarget.Create, keys_only: true },
    'descending by key': { sort_order: SortOrder.Descend },
    'by mod, descending': { sort_order: SortOrder.Descend, sort_target: SortTarget.Mod },
    'count only': { count_only: true },
    'max create': { max_create_revision: (base + 3n).toString() },
    'min mod': { min_mod_revision: (base + 4n).toString() },
  };
  for (const [what, extra] of Object.entries(ranges)) {
    await step(`range ${what}`, () => port.range({ key: b('t/'), range_end: end('t/'), ...extra }, 'range'));
  }
  await step('range one key', () => port.range({ key: b('t/x') }, 'range'));
  await step('range to the end', () => port.range({ key: b('t/lock/'), range_end: Buffer.from([0]) }, 'range'));
  await step('range missing', () => port.range({ key: b('t/none') }, 'range'));

  const compare = (target: CompareTarget, result: CompareResult, field: string, value: unknown, key = 't/x', rangeEnd?: Buffer) =>
    port.txn(
      {
        compare: [{ key: b(key), range_end: rangeEnd, target, result, [field]: value }],
        success: [{ request_range: { key: b(key), keys_only: true } }],
        failure: [],
      },
      'compare',
    );
  await step('value ==', () => compare(CompareTarget.Value, CompareResult.Equal, 'value', b('2')));
  await step('value of missing key', () => compare(CompareTarget.Value, CompareResult.NotEqual, 'value', b('2'), 't/none'));
  await step('version >', () => compare(CompareTarget.Version, CompareResult.Greater, 'version', '1'));
  await step('mod <', () => compare(CompareTarget.Mod, CompareResult.Less, 'mod_revision', (base + 5n).toString()));
  await step('lease == over a range', () => compare(CompareTarget.Lease, CompareResult.Equal, 'lease', a.ID, queue, end(queue)));
  await step('create != over a range', () =>
    compare(CompareTarget.Create, CompareResult.NotEqual, 'create_revision', '0', queue, end(queue)),
  );
  await step('create of missing key', () => compare(CompareTarget.Create, CompareResult.Equal, 'create_revision', '0', 't/none'));
  // Sharding: the record's compare-and-swap (absent: mod revision 0), "no member left", and its read of both.
  await step('mod of missing key', () => compare(CompareTarget.Mod, CompareResult.Equal, 'mod_revision', '0', 't/none'));
  await step('create == 0 over an empty range', () =>
    compare(CompareTarget.Create, CompareResult.Equal, 'create_revision', '0', 't/empty/', end('t/empty/')),
  );
  await step('two ranges in one txn', () =>
    port.txn(
      {
        compare: [],
        success: [
          { request_range: { key: b(queue), range_end: end(queue), sort_order: SortOrder.Ascend, sort_target: SortTarget.Create } },
          { request_range: { key: b('t/x') } },
        ],
        failure: [],
      },
      'txn',
    ),
  );
  await step('access probe', () =>
    port.txn(
      {
        compare: [{ key: b('t/'), range_end: end('t/'), target: CompareTarget.Create, result: CompareResult.Less, create_revision: '0' }],
        success: [
          { request_range: { key: b('t/'), range_end: end('t/'), keys_only: true } },
          { request_delete_range: { key: b('t/'), range_end: end('t/') } },
        ],
        failure: [],
      },
      'txn',
    ),
  );
  await step('read-only txn', () => port.txn({ compare: [], success: [{ request_range: { key: b('t/x') } }], failure: [] }, 'txn'));
  await step('duplicate put in txn', () =>
    port.txn({ compare: [], success: [{ request_put: { key: b('t/d') } }, { request_put: { key: b('t/d') } }], failure: [] }, 'txn'),
  );
  await step('put inside deleted range', () =>
    port.txn(
      {
        compare: [],
        success: [{ request_delete_range: { key: b('t/'), range_end: end('t/') } }, { request_put: { key: b('t/d') } }],
        failure: [],
      },
      'txn',
    ),
  );
  await step('put on unknown lease', () => put('t/y', '', { lease: '12345' }));
  await step('txn put on unknown lease', () =>
    port.txn({ compare: [], success: [{ request_put: { key: b('t/y'), lease: '12345' } }], failure: [] }, 'txn'),
  );
  await step('grant a taken id', () => port.leaseGrant(a.ID, 30, 5000));
  await step('revoke unknown lease', () => port.leaseRevoke('12345'));
  // release(): delete our key only if it is still the one we created.
  const release = (createRevision: string) =>
    port.txn(
      {
        compare: [{ key: b('t/x'), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: createRevision }],
        success: [{ request_delete_range: { key: b('t/x') } }],
        failure: [],
      },
      'txn',
    );
  await step('guarded release, not ours', () => release((base + 1n).toString()));
  const created = (await port.range({ key: b('t/x') }, 'range')).kvs[0].create_revision;
  await step('guarded release, ours', () => release(created));
  await step('put back', () => put('t/x', '3'));
  await step('delete one', () => port.deleteRange({ key: b('t/x'), prev_kv: true }, 'delete'));
  await step('delete none', () => port.deleteRange({ key: b('t/x') }, 'delete'));

  const stream = await port.keepAlive();
  const keepalive = (id: string) =>
    new Promise((resolve) => {
      (stream as unknown as NodeJS.EventEmitter).once('data', resolve);
      stream.write({ ID: id });
    });
  await step('keepalive', () => keepalive(a.ID));
  await step('revoke with keys', () => port.leaseRevoke(a.ID));
  await step('keepalive of revoked', () => keepalive(a.ID));
  stream.end();
  await port.leaseRevoke(c.ID);
  const last = await port.range({ key: b('t/') }, 'read');
  log.push(['revoke last', last.header.revision]);

  // Every watcher has seen the last revision (the last revoke deleted a key): then compare what they saw.
  const target = BigInt(last.header.revision);
  await Promise.all([seenUpTo(deletes, target), seenUpTo(all, target)]);
  await Promise.all([deleteWatch.watcher.cancel(), allWatch.watcher.cancel()]);
  log.push(['deletes seen', deletes], ['all seen', all]);
  return normalize(log, base);
}

/** Revisions relative to `base`, lease ids by first appearance, buffers as text, no cluster/member/term ids. */
function normalize(log: unknown[], base: bigint): unknown[] {
  const leases = new Map<string, string>();
  const lease = (id: string) => {
    if (id === '0' || id === '12345') return id;
    if (!leases.has(id)) leases.set(id, `L${leases.size + 1}`);
    return leases.get(id);
  };
  const walk = (v: unknown, field?: string): unknown => {
    if (Buffer.isBuffer(v)) return v.toString().replace(/\/(\d{6,})$/, (_, id) => `/${lease(id)}`);
    if (Array.isArray(v)) return v.map((x) => walk(x));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (k === 'cluster_id' || k === 'member_id' || k === 'raft_term' || k === 'watch_id') continue;
        out[k] = walk(x, k);
      }
      return out;
    }
    if (typeof v === 'string' && (field === 'lease' || field === 'ID')) return lease(v);
    if (typeof v === 'string' && field?.endsWith('revision') && v !== '0') return `base+${BigInt(v) - base}`;
    return v;
  };
  return walk(log) as unknown[];
}

describe('InMemoryEtcd', () => {
  it('answers every request shape the library sends exactly as etcd 3.4 does', async () => {
    const real = await script(new EtcdRpc(etcd.client, [etcd.endpoint], 5000));
    const memory = new InMemoryEtcd();
    const simulated = await script(memory);
    memory.close();
    expect(simulated).toEqual(real);
    // The script itself must exercise what it claims: errors, failed compares, both watchers.
    const text = JSON.stringify(real);
    for (const seen of ['EtcdLeaseInvalidError', 'GRPCInvalidArgumentError', 'GRPCFailedPreconditionError', '"succeeded":false']) {
      expect(text).toContain(seen);
    }
    expect(memory.entries()).toEqual([]);
    expect(memory.leases()).toEqual([]);
  });
});
