import type { EtcdPort } from '../etcd/etcd-port.js';
import { ResilientWatch } from '../etcd/resilient-watch.js';

/**
 * Calls `onChange` after any change under `prefix`, and after a restart (etcd cancelled the watch, e.g. on
 * compaction: changes may have been missed). The caller re-reads; events carry no state here.
 */
export function changeWatch(rpc: EtcdPort, prefix: string, onChange: () => void): ResilientWatch {
  return new ResilientWatch(
    rpc,
    { prefix },
    {
      read: async () => {
        const res = await rpc.range({ key: Buffer.from(prefix), count_only: true }, `read the revision of '${prefix}'`);
        onChange();
        return BigInt(res.header.revision);
      },
      onEvent: () => onChange(),
    },
  );
}
