import { jest } from '@jest/globals';
import type { IKeyValue } from 'etcd3';
import type { EtcdPort, PortWatcher, WatchRequest, WatchSink } from '../../lib/etcd/etcd-port.js';
import { ResilientWatch } from '../../lib/etcd/resilient-watch.js';

/** A watch the test drives, as etcd would; as the port promises, once failed or cancelled it tells nothing more. */
class FakeWatcher implements PortWatcher {
  cancelled = false;
  private ended = false;

  constructor(private readonly sink: WatchSink) {}

  emit(type: 'put' | 'delete', kv: IKeyValue): void {
    if (!this.ended) this.sink.event(type, kv);
  }

  fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.sink.error(err);
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    this.ended = true;
  }
}

/** A port that only watches. */
function fakePort() {
  const watches: Array<{ req: WatchRequest; watcher: FakeWatcher }> = [];
  const port = {
    watch(req: WatchRequest, sink: WatchSink) {
      const watcher = new FakeWatcher(sink);
      watches.push({ req, watcher });
      return watcher;
    },
  } as unknown as EtcdPort;
  return { port, watches };
}

const kv = (key: string) => ({ key: Buffer.from(key) }) as IKeyValue;

describe('ResilientWatch (the one restart mechanism of every watch that keeps state)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('watches from the given revision, and after etcd cancels it reads again and watches from the read + 1', async () => {
    const { port, watches } = fakePort();
    const events: string[] = [];
    let reads = 0;
    const watch = new ResilientWatch(
      port,
      { prefix: 'lock/a/' },
      {
        read: async () => {
          reads++;
          if (reads === 1) throw new Error('etcd did not answer');
          return 41n;
        },
        onEvent: (type, kv) => events.push(`${type} ${kv.key}`),
      },
    ).start(7n);
    expect(watches.map((w) => w.req.startRevision)).toEqual([7n]);
    watches[0].watcher.emit('put', kv('lock/a/1'));
    // etcd cancels it (a compaction): a read, which fails, then again after a backoff.
    watches[0].watcher.fail(new Error('compacted'));
    await jest.advanceTimersByTimeAsync(0);
    expect(reads).toBe(1);
    await jest.advanceTimersByTimeAsync(250);
    expect(reads).toBe(2);
    expect(watches.map((w) => w.req.startRevision)).toEqual([7n, 42n]);
    // The cancelled watch says nothing more; the new one does.
    watches[0].watcher.emit('delete', kv('lock/a/1'));
    watches[1].watcher.emit('delete', kv('lock/a/2'));
    expect(events).toEqual(['put lock/a/1', 'delete lock/a/2']);
    await watch.close();
    expect(watches[1].watcher.cancelled).toBe(true);
    watches[1].watcher.emit('put', kv('lock/a/3'));
    expect(events).toHaveLength(2);
  });

  it('without a start revision it reads first; closed meanwhile, it never starts a watch', async () => {
    const { port, watches } = fakePort();
    let answer: (revision: bigint) => void = () => undefined;
    const watch = new ResilientWatch(
      port,
      { prefix: 'x/' },
      {
        read: () => new Promise<bigint>((resolve) => (answer = resolve)),
        onEvent: () => undefined,
      },
    ).start();
    await watch.close();
    answer(3n);
    await jest.advanceTimersByTimeAsync(0);
    expect(watches).toEqual([]);
  });
});
