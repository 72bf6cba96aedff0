import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import { LockService } from '../lib/index.js';
import type { Inventory } from '../lib/inventory/inventory.js';
import { watchInventory } from '../lib/inventory/inventory-watch.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

describe('the inventory a watch reads at every change', () => {
  it("reads each lease's TTL once, not at every change: a fleet's dashboard does not ask etcd about every replica each time", async () => {
    const [watcher, busy] = [await etcd.app({ identity: 'watcher', ttl: 60 }), await etcd.app({ identity: 'busy', ttl: 60 })];
    const port = watcher.get(EtcdConnection).port;
    const lookups: string[] = [];
    const original = port.leaseTimeToLive;
    port.leaseTimeToLive = (id) => {
      lookups.push(id);
      return original.call(port, id);
    };
    const seen: Inventory[] = [];
    let next: (() => void) | undefined;
    const stop = new AbortController();
    const watching = watchInventory(
      port,
      '',
      (inv) => {
        seen.push(inv);
        next?.();
      },
      stop.signal,
    );
    const shown = (count: number) => new Promise<void>((resolve) => (next = () => seen.length >= count && resolve()));
    const locks = busy.get(LockService);
    for (let i = 0; i < 10; i++) {
      const change = shown(seen.length + 1);
      const lock = await locks.acquire(`order-${i}`);
      await change;
      await lock.release();
    }
    stop.abort();
    await watching;
    port.leaseTimeToLive = original;
    // Both sessions' leases, looked up when first seen; counted down between reads.
    expect(seen.length).toBeGreaterThanOrEqual(10);
    expect(new Set(lookups).size).toBe(2);
    expect(lookups).toHaveLength(2);
    const last = seen[seen.length - 1].sessions;
    expect(last.map((s) => s.ttl).every((ttl) => ttl > 50 && ttl <= 60)).toBe(true);
  });

  it('stops when its signal aborts during a read, with no change after it to wake it', async () => {
    const app = await etcd.app({ identity: 'watcher' });
    const port = app.get(EtcdConnection).port;
    const txn = port.txn;
    const stop = new AbortController();
    let reads = 0;
    // The second read of the inventory is answered only after the abort.
    port.txn = async (req, what, timeoutMs) => {
      if (what.startsWith('read the keys under the prefix') && ++reads === 2) stop.abort();
      return txn.call(port, req, what, timeoutMs);
    };
    let shows = 0;
    const watching = watchInventory(port, '', () => void shows++, stop.signal);
    const lock = await app.get(LockService).tryAcquire('one-change');
    await watching;
    port.txn = txn;
    expect(shows).toBe(2);
    await lock?.release();
  });
});
