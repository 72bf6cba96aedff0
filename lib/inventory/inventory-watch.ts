import { changeWatch, type ResilientWatch } from '../etcd/resilient-watch.js';
import { EtcdUnavailableError } from '../errors.js';
import { keyRoots } from '../etcd/keys.js';
import { Backoff } from '../util/backoff.js';
import { sleep } from '../util/wait-signal.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { type Inventory, LeaseTtls, readInventory } from './inventory.js';

/**
 * The CLI's `status --watch` and the dashboard's feed: one inventory, then a new one after each change etcd reports under the library's key roots
 * (watched from the revision after the first read, so no change is missed; never polled; a watch that etcd
 * cancels starts again from a new read, and the inventory is read anew). Changes that arrive during a read are
 * folded into the next one. Runs until `signal` aborts. A lease's TTL is read when it is first seen and once a third
 * of its TTL has passed since (see `LeaseTtls`), not at every change.
 */
export async function watchInventory(
  rpc: EtcdPort,
  prefix: string,
  show: (inv: Inventory) => void | Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const backoff = new Backoff(250, 5000);
  const leaseTtls = new LeaseTtls();
  let watches: ResilientWatch[] = [];
  let dirty = false;
  let wake: (() => void) | undefined;
  const changed = () => {
    dirty = true;
    wake?.();
  };
  signal.addEventListener('abort', () => wake?.(), { once: true });
  try {
    while (!signal.aborted) {
      let inv: Inventory;
      try {
        dirty = false;
        inv = await readInventory(rpc, prefix, leaseTtls);
        backoff.reset();
      } catch (err) {
        // Only an unreachable etcd is waited out; refused credentials and the like end the command.
        if (!(err instanceof EtcdUnavailableError)) throw err;
        await sleep(backoff.next(), signal).catch(() => undefined);
        continue;
      }
      if (watches.length === 0) {
        const from = inv.revision + 1n;
        watches = keyRoots(prefix).map((root) => changeWatch(rpc, root, changed).start(from));
      }
      await show(inv);
      // An abort during the read or the show found no one to wake: it must not leave this waiting for a change.
      if (!dirty && !signal.aborted) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    await Promise.all(watches.map((watch) => watch.close()));
  }
}
