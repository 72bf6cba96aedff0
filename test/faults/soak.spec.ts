import { LockService } from '../../lib/index.js';
import { DeletionWatches } from '../../lib/connection/deletion-watches.js';
import { useEtcd } from '../harness/fixtures.js';

const etcd = useEtcd();

const CYCLES = 50_000;
const INSTANCES = 3;
const CALLERS_PER_INSTANCE = 4;
const NAMES = 5;

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with --expose-gc (npm run test:faults does)');
  collect();
  collect();
}

/** Active resources by kind (timers, sockets, …), from Node itself. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** What the library keeps per lock name: must be empty when nothing is held or awaited. */
function internals(app: { get: (t: unknown) => unknown }) {
  const locks = app.get(LockService) as unknown as { local: { names: Map<string, unknown> } };
  type Watches = { keys: Map<string, { subscriptions: unknown[] }> };
  const watches = (app.get(DeletionWatches) as DeletionWatches).of('lock') as unknown as Watches;
  const keys = [...watches.keys.values()];
  return { localQueue: locks.local.names.size, lockSubscribers: keys.reduce((n, w) => n + w.subscriptions.length, 0) };
}

describe('soak', () => {
  it(`${CYCLES} acquire/release cycles from ${INSTANCES} instances leave nothing behind and do not grow`, async () => {
    const apps = await Promise.all(Array.from({ length: INSTANCES }, (_, i) => etcd.app({ identity: `soak-${i}` })));
    let done = 0;
    const run = async (cycles: number) => {
      const perCaller = Math.ceil(cycles / (INSTANCES * CALLERS_PER_INSTANCE));
      await Promise.all(
        apps.flatMap((app, i) =>
          Array.from({ length: CALLERS_PER_INSTANCE }, async (_, c) => {
            const locks = app.get(LockService);
            for (let n = 0; n < perCaller; n++) {
              const lock = await locks.acquire(`soak:${(i + c + n) % NAMES}`);
              await lock.release();
              done++;
            }
          }),
        ),
      );
    };

    await run(5_000); // warm-up: JIT, pools, caches
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const resourcesBefore = resources();
    const started = performance.now();
    await run(CYCLES);
    const seconds = (performance.now() - started) / 1000;
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const resourcesAfter = resources();

    console.log(
      `soak: ${CYCLES} cycles in ${seconds.toFixed(1)} s (${Math.round(CYCLES / seconds)}/s); ` +
        `heap ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB; ` +
        `resources ${JSON.stringify(resourcesBefore)} -> ${JSON.stringify(resourcesAfter)}`,
    );
    expect(done).toBeGreaterThanOrEqual(CYCLES + 5_000);
    expect(heapAfter - heapBefore).toBeLessThan(8 * 2 ** 20);
    for (const kind of ['Timeout', 'TCPSocketWrap', 'TCPWrap']) {
      expect(resourcesAfter[kind] ?? 0).toBeLessThanOrEqual((resourcesBefore[kind] ?? 0) + 2);
    }
    for (const app of apps) expect(internals(app as never)).toEqual({ localQueue: 0, lockSubscribers: 0 });
    expect(await etcd.client.getAll().prefix('lock/').keys()).toEqual([]);
  }, 300_000);
});
