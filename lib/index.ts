export { EtcdLockModule } from './etcd-lock.module.js';
export { EtcdLockOptions } from './interfaces/etcd-lock-options.interface.js';
export type { Lock, LockHolder } from './interfaces/lock.interface.js';
export { LockService, type AcquireOptions, type TryAcquireOptions } from './lock.service.js';
export { FencedTxn, type TxnColumn, type TxnComparison, type TxnOperation } from './fenced-txn.js';
export {
  EtcdLockError,
  EtcdRequestError,
  EtcdUnavailableError,
  InvalidArgumentError,
  InvalidOptionsError,
  LockLostError,
  LockReleasedError,
  LockTimeoutError,
  type LockLossReason,
} from './errors.js';
