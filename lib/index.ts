export { EtcdLockModule } from './module/etcd-lock.module.js';
export { EtcdLockOptions } from './module/etcd-lock-options.interface.js';
export type { Lock, LockHolder } from './locks/lock.interface.js';
export { LockService, type AcquireOptions, type TryAcquireOptions } from './locks/lock.service.js';
export { EtcdSessionService, type SessionStatus } from './session/session.service.js';
export {
  type EtcdLockEvent,
  EtcdLockEventName,
  EtcdLockEvents,
  diagnosticsChannelOf,
  type LeadershipChangedEvent,
  type LockLostEvent,
  type SessionGrantedEvent,
  type SessionLostEvent,
  type ShardsChangedEvent,
} from './events/etcd-lock.events.js';
export { type ElectionStatus, LeaderElectionService } from './election/leader-election.service.js';
export { LeaderOnly } from './decorators/leader-only.decorator.js';
export { Singleton } from './decorators/singleton.decorator.js';
export { MaxConcurrent } from './decorators/max-concurrent.decorator.js';
export { OnLeadership } from './decorators/on-leadership.decorator.js';
export { Sharded, type ShardedOptions } from './decorators/sharded.decorator.js';
export { ShardingService, type ShardGroupOptions } from './sharding/sharding.service.js';
export type { Shard, ShardSet } from './sharding/shard.interface.js';
export {
  type AcquirePermitOptions,
  type Permit,
  type PermitOptions,
  SemaphoreService,
} from './semaphores/semaphore.service.js';
export { ReadWriteLockService } from './rwlocks/read-write-lock.service.js';
export type { Leadership } from './election/leadership.interface.js';
export type { SingletonKey, SingletonOptions } from './decorators/singleton-options.interface.js';
export { FencedTxn, type TxnColumn, type TxnComparison, type TxnOperation } from './locks/fenced-txn.js';
export {
  type AccessDeniedReason,
  EtcdAccessDeniedError,
  EtcdLockError,
  EtcdRequestError,
  EtcdUnavailableError,
  InvalidArgumentError,
  InvalidOptionsError,
  LockBusyError,
  LockLostError,
  LockReleasedError,
  LockTimeoutError,
  type LockLossReason,
  LeadershipLostError,
  ShardCountMismatchError,
  ShardLostError,
  type ShardLossReason,
  type LeadershipLossReason,
} from './errors.js';
