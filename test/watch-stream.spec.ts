import { Etcd3, type IKeyValue } from 'etcd3';
import type { PortWatcher, WatchSink } from '../lib/etcd/etcd-port.js';
import { EtcdRpc } from '../lib/etcd/etcd-rpc.js';
import { WatchCancelledError } from '../lib/etcd/watch-stream.js';
import { etcdMetric, grpcCounts } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

const gauge = (name: string) => etcdMetric(etcd.endpoint, name);

/** A watch's sink that records what it is told, with waits for it. */
class Recorder implements WatchSink {
  readonly puts: string[] = [];
  readonly errors: unknown[] = [];
  private waits: Array<() => void> = [];
  private isConnected = false;

  connected(): void {
    this.isConnected = true;
    this.wake();
  }

  event(type: 'put' | 'delete', kv: IKeyValue): void {
    if (type === 'put') this.puts.push(kv.key.toString());
    this.wake();
  }

  error(err: unknown): void {
    this.errors.push(err);
    this.wake();
  }

  /** Resolves once `done()` holds. */
  async until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.waits.push(resolve));
  }

  whenConnected(): Promise<void> {
    return this.until(() => this.isConnected);
  }

  /** Resolves with the keys of the next `count` puts. */
  async nextPuts(count: number): Promise<string[]> {
    const from = this.puts.length;
    await this.until(() => this.puts.length >= from + count);
    return this.puts.slice(from, from + count);
  }

  private wake(): void {
    for (const wake of this.waits.splice(0)) wake();
  }
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
    const watch = (prefix: string): { watcher: PortWatcher; sink: Recorder } => {
      const sink = new Recorder();
      return { watcher: rpc.watch({ prefix, startRevision: revision + 1n }, sink), sink };
    };
    const streamsBefore = (await grpcCounts([etcd.endpoint], 'grpc_server_started_total')).get('Watch') ?? 0;
    const watches = Array.from({ length: 300 }, (_, i) => watch(`w/${i}/`));
    await Promise.all(watches.map((w) => w.sink.whenConnected()));
    expect(await gauge('etcd_debugging_mvcc_watch_stream_total')).toBe(1);
    expect(await gauge('etcd_debugging_mvcc_watcher_total')).toBe(300);
    const told = watches.map((w) => w.sink.nextPuts(1));
    for (let i = 0; i < 300; i++) await etcd.client.put(`w/${i}/k`).value('v');
    expect(await Promise.all(told)).toEqual(watches.map((_, i) => [`w/${i}/k`]));

    // etcd handles a stream's requests in order: once a watch made after 299 cancels is created, they are done.
    await Promise.all(watches.slice(1).map((w) => w.watcher.cancel()));
    const after = watch('w/after/');
    await after.sink.whenConnected();
    expect(await gauge('etcd_debugging_mvcc_watcher_total')).toBe(2);
    // The last cancel ends the stream: the next watch opens a new one.
    await Promise.all([watches[0].watcher.cancel(), after.watcher.cancel()]);
    const next = watch('w/next/');
    await next.sink.whenConnected();
    expect(((await grpcCounts([etcd.endpoint], 'grpc_server_started_total')).get('Watch') ?? 0) - streamsBefore).toBe(2);
    await next.watcher.cancel();
  });

  it('replays history from the start revision, and after etcd restarts resumes after the last event: nothing missed, nothing twice', async () => {
    const revision = BigInt((await etcd.client.kv.range({ key: Buffer.from('w/') })).header.revision);
    await etcd.client.put('w/a/1').value('before the watch');
    const sink = new Recorder();
    const watcher = rpc.watch({ prefix: 'w/a/', startRevision: revision + 1n }, sink);
    await sink.nextPuts(1);
    await etcd.server.stop();
    await etcd.server.start();
    const next = sink.nextPuts(1);
    await etcd.client.put('w/a/2').value('after the restart');
    await next;
    const fence = sink.nextPuts(1);
    await etcd.client.put('w/a/3').value('last');
    await fence;
    expect(sink.puts).toEqual(['w/a/1', 'w/a/2', 'w/a/3']);
    await watcher.cancel();
  });

  it('after a restart makes again only the watches still live: one cancelled while etcd was down is not', async () => {
    const revision = BigInt((await etcd.client.kv.range({ key: Buffer.from('w/') })).header.revision);
    const [kept, dropped] = [new Recorder(), new Recorder()];
    const keptWatcher = rpc.watch({ prefix: 'w/kept/', startRevision: revision + 1n }, kept);
    const droppedWatcher = rpc.watch({ prefix: 'w/dropped/', startRevision: revision + 1n }, dropped);
    await Promise.all([kept.whenConnected(), dropped.whenConnected()]);
    await etcd.server.stop();
    await droppedWatcher.cancel();
    await etcd.server.start();
    const next = kept.nextPuts(1);
    await etcd.client.put('w/dropped/1').value('nobody listens');
    await etcd.client.put('w/kept/1').value('after the restart');
    expect(await next).toEqual(['w/kept/1']);
    expect(dropped.puts).toEqual([]);
    expect(await gauge('etcd_debugging_mvcc_watcher_total')).toBe(1);
    await keptWatcher.cancel();
  });

  it('a watch of compacted history gets an error naming the oldest revision left', async () => {
    await etcd.client.put('w/c').value('1');
    const { header } = await etcd.client.kv.put({ key: Buffer.from('w/c'), value: Buffer.from('2') });
    await etcd.client.kv.compact({ revision: header.revision, physical: true });
    const sink = new Recorder();
    rpc.watch({ prefix: 'w/', startRevision: 1n }, sink);
    await sink.until(() => sink.errors.length > 0);
    const [err] = sink.errors as [WatchCancelledError];
    expect(sink.errors).toHaveLength(1);
    expect(err).toBeInstanceOf(WatchCancelledError);
    expect(err.compactRevision).toBe(BigInt(header.revision));
  });
});
