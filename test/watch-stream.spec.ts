import { once } from 'node:events';
import { Etcd3, type IKeyValue } from 'etcd3';
import type { PortWatcher } from '../lib/etcd/etcd-port.js';
import { EtcdRpc } from '../lib/etcd/etcd-rpc.js';
import { WatchCancelledError } from '../lib/etcd/watch-stream.js';
import { etcdMetric, grpcCounts } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

const gauge = (name: string) => etcdMetric(etcd.endpoint, name);

/** Resolves with the keys of the next `count` puts the watcher reports. */
function puts(watcher: PortWatcher, count: number): Promise<string[]> {
  const keys: string[] = [];
  return new Promise((resolve) => {
    const onPut = (kv: IKeyValue) => {
      keys.push(kv.key.toString());
      if (keys.length === count) resolve(keys);
    };
    watcher.on('put', onPut);
  });
}

describe('WatchStream: every watch of a client on one etcd stream', () => {
  let rpc: EtcdRpc;
  beforeEach(() => {
    rpc = new EtcdRpc(new Etcd3({ hosts: etcd.endpoint }), [etcd.endpoint], 2000);
  });
  afterEach(async () => {
    rpc.close();
    await etcd.client.delete().prefix('w/');
  });

  it('creates 300 watches in one burst on one stream; each is told only of its own keys; the last cancel ends the stream', async () => {
    const revision = BigInt((await etcd.client.kv.range({ key: Buffer.from('w/') })).header.revision);
    const watch = (prefix: string) => rpc.watch({ prefix, startRevision: revision + 1n });
    const connected = (w: PortWatcher) => once(w as unknown as NodeJS.EventEmitter, 'connected');
    const streamsBefore = (await grpcCounts([etcd.endpoint], 'grpc_server_started_total')).get('Watch') ?? 0;
    const watchers = Array.from({ length: 300 }, (_, i) => watch(`w/${i}/`));
    await Promise.all(watchers.map(connected));
    expect(await gauge('etcd_debugging_mvcc_watch_stream_total')).toBe(1);
    expect(await gauge('etcd_debugging_mvcc_watcher_total')).toBe(300);
    const told = watchers.map((w) => puts(w, 1));
    for (let i = 0; i < 300; i++) await etcd.client.put(`w/${i}/k`).value('v');
    expect(await Promise.all(told)).toEqual(watchers.map((_, i) => [`w/${i}/k`]));

    // etcd handles a stream's requests in order: once a watch made after 299 cancels is created, they are done.
    await Promise.all(watchers.slice(1).map((w) => w.cancel()));
    const after = watch('w/after/');
    await connected(after);
    expect(await gauge('etcd_debugging_mvcc_watcher_total')).toBe(2);
    // The last cancel ends the stream: the next watch opens a new one.
    await Promise.all([watchers[0].cancel(), after.cancel()]);
    const next = watch('w/next/');
    await connected(next);
    expect(((await grpcCounts([etcd.endpoint], 'grpc_server_started_total')).get('Watch') ?? 0) - streamsBefore).toBe(2);
    await next.cancel();
  });

  it('replays history from the start revision, and after etcd restarts resumes after the last event: nothing missed, nothing twice', async () => {
    const revision = BigInt((await etcd.client.kv.range({ key: Buffer.from('w/') })).header.revision);
    await etcd.client.put('w/a/1').value('before the watch');
    const watcher = rpc.watch({ prefix: 'w/a/', startRevision: revision + 1n });
    const seen: string[] = [];
    watcher.on('put', (kv: IKeyValue) => seen.push(kv.key.toString()));
    await puts(watcher, 1);
    await etcd.server.stop();
    await etcd.server.start();
    const next = puts(watcher, 1);
    await etcd.client.put('w/a/2').value('after the restart');
    await next;
    const fence = puts(watcher, 1);
    await etcd.client.put('w/a/3').value('last');
    await fence;
    expect(seen).toEqual(['w/a/1', 'w/a/2', 'w/a/3']);
    await watcher.cancel();
  });

  it('a watch of compacted history gets an error naming the oldest revision left', async () => {
    await etcd.client.put('w/c').value('1');
    const { header } = await etcd.client.kv.put({ key: Buffer.from('w/c'), value: Buffer.from('2') });
    await etcd.client.kv.compact({ revision: header.revision, physical: true });
    const watcher = rpc.watch({ prefix: 'w/', startRevision: 1n });
    const [err] = (await once(watcher as unknown as NodeJS.EventEmitter, 'error')) as [WatchCancelledError];
    expect(err).toBeInstanceOf(WatchCancelledError);
    expect(err.compactRevision).toBe(BigInt(header.revision));
  });
});
