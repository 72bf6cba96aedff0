import { Etcd3 } from 'etcd3';
import { EtcdLockTestingModule, type InMemoryEtcd } from 'nestjs-etcd-lock/testing';
import type { SampleBackend } from './app.module.js';
import type { SampleConfig } from './config.js';

/**
 * The backend of `npm run demo` on a machine without etcd: every replica runs in one process, on one
 * `InMemoryEtcd` (each through its own `connect()`, so one replica can be cut off alone). Locks and elections
 * run the library's real code; only etcd is simulated.
 */
export function inMemoryBackend(config: SampleConfig, etcd: InMemoryEtcd): SampleBackend {
  return {
    locks: EtcdLockTestingModule.forRoot({ etcd, prefix: config.prefix, identity: config.identity, ttl: config.ttl }),
    data: { provide: Etcd3, useValue: new InMemoryDataClient(etcd) as unknown as Etcd3 },
  };
}

/** The two reads `AccountsService` makes with etcd3's client, on an `InMemoryEtcd` (writes go through `fencedTxn`). */
class InMemoryDataClient {
  constructor(private readonly etcd: InMemoryEtcd) {}

  get(key: string) {
    return { string: async () => this.etcd.entries(key).find((e) => e.key === key)?.value ?? null };
  }

  getAll() {
    return {
      prefix: (prefix: string) => ({
        strings: async () => Object.fromEntries(this.etcd.entries(prefix).map((e) => [e.key, e.value])),
      }),
    };
  }

  close(): void {}
}
