import {
  EtcdUnavailableError,
  InvalidArgumentError,
  type Lock,
  LockLostError,
  LockTimeoutError,
  ReadWriteLockService,
} from '../lib/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { useEtcd } from './harness/fixtures.js';
import { NodeProcess } from './harness/processes.js';

const etcd = useEtcd();
const keysOf = async (name: string) => (await etcd.client.getAll().prefix(`rwlock/${name}/`).keys()).sort();

/** Resolves at the next put under the name, i.e. once a caller's key is in etcd (it has arrived). */
async function arrival(name: string): Promise<() => Promise<void>> {
  const watcher = await etcd.client.watch().prefix(`rwlock/${name}/`).create();
  return () =>
    new Promise<void>((resolve) =>
      watcher.once('put', () => {
        void watcher.cancel();
        resolve();
      }),
    );
}

describe('ReadWriteLockService', () => {
  it("a reader's join compares the writers' range only, and a retried join keeps its first create revision", async () => {
    const app = await etcd.app();
    const port = app.get(EtcdConnection).port;
    const txn = port.txn.bind(port);
    const joins: string[] = [];
    // The first join is applied but its answer is lost: the reader retries, and finds its key already there.
    port.txn = async (req, what, timeoutMs) => {
      joins.push(req.compare?.[0]?.key?.toString() ?? '');
      const res = await txn(req, what, timeoutMs);
      if (joins.length === 1) throw new EtcdUnavailableError('etcd did not answer (test)', [etcd.endpoint]);
      return res;
    };
    const reader = await app.get(ReadWriteLockService).acquireRead('doc');
    port.txn = txn;
    expect(joins).toEqual(['rwlock/doc/write/', 'rwlock/doc/write/']);
    const { kvs } = await etcd.client.kv.range({ key: Buffer.from(reader.key) });
    expect(reader.fencingToken).toBe(BigInt(kvs[0].create_revision));
    expect(BigInt(kvs[0].mod_revision)).toBeGreaterThan(reader.fencingToken); // put twice, created once
    await reader.release();
  });

  it('readers share; a writer waits for them and excludes everyone; a reader after a waiting writer waits for it', async () => {
    const [a, b] = [await etcd.app({ identity: 'a' }), await etcd.app({ identity: 'b' })];
    const [ra, rb] = [a.get(ReadWriteLockService), b.get(ReadWriteLockService)];
    const r1 = await ra.acquireRead('cache');
    const r2 = await rb.acquireRead('cache');
    expect(r2.key).toMatch(/^rwlock\/cache\/read\/[0-9a-f]+-\d+$/);
    expect(await ra.tryAcquireWrite('cache')).toBeNull();

    const events: string[] = [];
    let arrived = (await arrival('cache'))();
    const writer = rb.acquireWrite('cache').then((lock) => {
      events.push('writer holds');
      return lock;
    });
    await arrived;
    // The writer waits: a new reader may not pass it.
    expect(await ra.tryAcquireRead('cache')).toBeNull();
    arrived = (await arrival('cache'))();
    const lateReader = ra.acquireRead('cache').then((lock) => {
      events.push('late reader holds');
      return lock;
    });
    await arrived;
    // Each release is told before it is sent: whoever holds next can only hold after that.
    events.push('r1 releases');
    await r1.release();
    events.push('r2 releases');
    await r2.release();
    const w = await writer;
    expect(w.key).toMatch(/^rwlock\/cache\/write\//);
    expect(w.fencingToken).toBeGreaterThan(r2.fencingToken);
    events.push('writer releases');
    await w.release();
    const late = await lateReader;
    expect(late.fencingToken).toBeGreaterThan(w.fencingToken);
    expect(events).toEqual(['r1 releases', 'r2 releases', 'writer holds', 'writer releases', 'late reader holds']);
    await late.release();
    expect(await keysOf('cache')).toEqual([]);
  });

  it('a stream of readers does not starve a writer: every reader ahead of it ends before it holds, every reader after it starts after it released', async () => {
    const app = await etcd.app();
    const rw = app.get(ReadWriteLockService);
    const log: Array<{ kind: 'read' | 'write'; token: bigint; heldAt: number; releasedAt: number }> = [];
    // Each caller holds until the next one has arrived (its key is in etcd) and, if both read, until it holds too:
    // readers overlap by construction, and a reader before the writer lets it go once the writer is queued.
    const callers: Array<{ kind: 'read' | 'write'; held: Promise<Lock>; release: () => void }> = [];
    const runs: Array<Promise<void>> = [];
    const arrive = async (kind: 'read' | 'write') => {
      const arrived = (await arrival('feed'))();
      let release = () => {};
      const released = new Promise<void>((resolve) => (release = resolve));
      const held = kind === 'read' ? rw.acquireRead('feed') : rw.acquireWrite('feed');
      runs.push(
        (async () => {
          const lock = await held;
          const heldAt = performance.now();
          await released;
          const releasedAt = performance.now();
          await lock.release();
          log.push({ kind, token: lock.fencingToken, heldAt, releasedAt });
        })(),
      );
      await arrived;
      const previous = callers.at(-1);
      callers.push({ kind, held, release });
      if (previous?.kind === 'read' && kind === 'read') void held.then(previous.release);
      else previous?.release();
    };
    for (let i = 0; i < 12; i++) {
      if (i === 4) await arrive('write');
      await arrive('read');
    }
    callers.at(-1)?.release();
    await Promise.all(runs);
    const w = log.find((e) => e.kind === 'write') as (typeof log)[number];
    const readers = log.filter((e) => e.kind === 'read');
    const before = readers.filter((r) => r.token < w.token);
    const after = readers.filter((r) => r.token > w.token);
    expect(before).toHaveLength(4);
    expect(after).toHaveLength(8);
    for (const r of before) expect(r.releasedAt).toBeLessThanOrEqual(w.heldAt);
    for (const r of after) expect(r.heldAt).toBeGreaterThanOrEqual(w.releasedAt);
    // Readers did share: some held at the same time.
    expect(readers.some((r, i) => readers.some((o, j) => i !== j && o.heldAt < r.releasedAt && r.heldAt < o.releasedAt))).toBe(true);
  });

  it('loss, timeout and bad input: as for locks', async () => {
    const app = await etcd.app();
    const rw = app.get(ReadWriteLockService);
    const writer = await rw.acquireWrite('config');
    await expect(rw.acquireRead('config', { timeout: 100 })).rejects.toThrow(LockTimeoutError);
    expect(await keysOf('config')).toEqual([writer.key]);
    await etcd.client.delete().key(writer.key);
    expect(await whenAborted(writer.signal)).toMatchObject({ name: LockLostError.name, reason: 'key-deleted' });
    await writer.release();
    await expect(rw.acquireRead('a/b')).rejects.toThrow(InvalidArgumentError);
    await expect(rw.acquireWrite('x', { limit: 2 } as never)).rejects.toThrow(InvalidArgumentError);
    expect(await rw.withRead('config', (lock) => lock.isHeld)).toBe(true);
    expect(await keysOf('config')).toEqual([]);
  });

  it('3 processes mixing reads and writes: no reader overlaps a writer and no two writers overlap (counted in etcd through fenced writes)', async () => {
    await etcd.client.put('rw/readers').value('0');
    await etcd.client.put('rw/writers').value('0');
    const workers = ['p1', 'p2', 'p3'].map((id) => new NodeProcess('test/workers/rwlock-worker.mjs', [etcd.endpoint, '60', id]));
    await Promise.all(workers.map((w) => w.line((l) => l === 'ready')));
    for (const w of workers) w.send('go');
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0]);
    const sections = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { mode: string; readers: number; writers: number }),
    );
    expect(sections).toHaveLength(180);
    const reads = sections.filter((s) => s.mode === 'read');
    const writes = sections.filter((s) => s.mode === 'write');
    expect(writes.length).toBeGreaterThan(0);
    for (const s of reads) expect(s.writers).toBe(0);
    for (const s of writes) expect([s.readers, s.writers]).toEqual([0, 1]);
    // Readers shared: at some point more than one was inside.
    expect(Math.max(...reads.map((s) => s.readers))).toBeGreaterThan(1);
    expect(await etcd.client.get('rw/readers').string()).toBe('0');
    await etcd.client.delete().prefix('rw/');
  }, 60_000);
});
