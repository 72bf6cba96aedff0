export { EtcdLockTestingModule, type EtcdLockTestingOptions } from './etcd-lock-testing.module.js';
export { EtcdLockTesting, type SimulatedHolder } from './etcd-lock-testing.service.js';
export { InMemoryEtcd, type StoredEntry } from './in-memory-etcd.js';
export { ManualClock } from './manual-clock.js';
