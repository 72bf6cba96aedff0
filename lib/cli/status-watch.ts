import type { PortWatcher } from '../etcd/etcd-port.js';
import { EtcdUnavailableError } from '../errors.js';
import { keyRoots } from '../etcd/keys.js';
import { Backoff } from '../util/backoff.js';
import { sleep } from '../util/wait-signal.js';
import type { Connection } from './connection.js';
import { type Inventory, readInventory } from './inventory.js';

/**
 * `status --watch`: one inventory, then a new one after each change etcd reports under the library's key roots
 * (watched from the revision after the read, so no change is missed; never polled). Changes that arrive during a
 * read are folded into the next one. Runs until `signal` aborts. TTLs are as read, and are not counted down.
 */
export async function watchInventory(conn: Connection, show: (inv: Inventory) => void, signal: AbortSignal): Promise<void> {
  const roots = keyRoots(conn.prefix);
  const backoff = new Backoff(250, 5000);
  let watchers: PortWatcher[] = [];
  let dirty = false;
  let wake: (() => void) | undefined;
  const changed = () => {
    dirty = true;
    wake?.();
  };
  const stop = () => Promise.all(watchers.splice(0).map((w) => w.cancel().catch(() => undefined)));
  signal.addEventListener('abort', () => wake?.(), { once: true });
  try {
    let restart = true;
    while (!signal.aborted) {
      let inv: Inventory;
      try {
        dirty = false;
        inv = await readInventory(conn.rpc, conn.prefix);
        backoff.reset();
      } catch (err) {
        // Only an unreachable etcd is waited out; refused credentials and the like end the command.
        if (!(err instanceof EtcdUnavailableError)) throw err;
        await sleep(backoff.next(), signal).catch(() => undefined);
        continue;
      }
      if (restart) {
        await stop();
        restart = false;
        watchers = roots.map((prefix) => {
          const w = conn.rpc.watch({ prefix, startRevision: inv.revision + 1n });
          w.on('data', changed);
          // etcd cancelled the watch (compaction): read again and watch from that read.
          w.on('error', () => {
            restart = true;
            changed();
          });
          return w;
        });
      }
      show(inv);
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    await stop();
  }
}
