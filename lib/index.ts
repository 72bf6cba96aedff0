// The module and its options.
export { EtcdLockModule } from './module/etcd-lock.module.js';
export { EtcdLockOptions } from './options/etcd-lock-options.interface.js';
export { type Clock, type ClockTimer, systemClock } from './clock/clock.js';

// Locks: acquire, try, with, who holds, watch; every hold's fenced transaction.
export { LockService, type AcquireOptions, type TryAcquireOptions } from './locks/lock.service.js';
export type { Lock, LockHolder } from './locks/lock.interface.js';
export type { MultiLock } from './locks/multi-lock.js';
export type { QueueEntry, QueueSnapshot } from './inventory/queue-inspect.js';
export type { FencedTxn, TxnColumn, TxnComparison, TxnOperation } from './locks/fenced-txn.js';

// Semaphores and read/write locks: the same holds with N owners, or readers that share.
export { type AcquirePermitOptions, type Permit, type PermitOptions, SemaphoreService } from './semaphores/semaphore.service.js';
export { type ReadWriteAcquireOptions, ReadWriteLockService, type ReadWriteTryAcquireOptions } from './rwlocks/read-write-lock.service.js';

// Leader election and its terms.
export { type ElectionStatus, LeaderElectionService } from './election/leader-election.service.js';
export type { Leadership } from './election/leadership.interface.js';

// Sharding: a group's shards spread over the replicas.
export { ShardingService, type ShardGroupOptions } from './sharding/sharding.service.js';
export type { Shard, ShardSet } from './sharding/shard.interface.js';

// Scheduled jobs: each fire time of a @Cron or @Interval method run once across the fleet, recorded, controlled.
export { ScheduledJob } from './scheduling/scheduled-job.decorator.js';
export type { CatchUpPolicy, OverlapPolicy, ScheduledJobOptions } from './scheduling/scheduled-job.options.js';
export { ScheduledJobsService } from './scheduling/scheduled-jobs.service.js';
export type { JobRun, JobRunKind, JobRunOutcome } from './scheduling/job-record.js';
export type { JobStatus } from './scheduling/job-status.js';
export type { RunInfo } from './scheduling/run-context.js';

// Decorators for methods that run once across replicas.
export { LeaderOnly } from './decorators/leader-only.decorator.js';
export { Singleton } from './decorators/singleton.decorator.js';
export type { SingletonKey, SingletonOptions } from './decorators/singleton-options.interface.js';
export { MaxConcurrent } from './decorators/max-concurrent.decorator.js';
export { OnLeadership } from './decorators/on-leadership.decorator.js';
export { Sharded, type ShardedOptions } from './decorators/sharded.decorator.js';

// The live dashboard, mounted in an HTTP app (the CLI's `dashboard` command serves the same page).
export { EtcdLockDashboardModule, type EtcdLockDashboardOptions } from './dashboard/dashboard.module.js';

// The instance's session (one lease), and what happens to it and its holds, as events.
export { EtcdSessionService, type SessionStatus } from './session/session.service.js';
export {
  diagnosticsChannelOf,
  type EtcdLockEvent,
  EtcdLockEventName,
  EtcdLockEvents,
  type HoldKind,
  type LeadershipChangedEvent,
  type LockLostEvent,
  type SessionGrantedEvent,
  type SessionLossReason,
  type SessionLostEvent,
  type ShardsChangedEvent,
  type JobRunEvent,
} from './events/etcd-lock.events.js';

// Errors: all extend EtcdLockError.
export {
  type AccessDeniedReason,
  EtcdAccessDeniedError,
  EtcdLockError,
  EtcdRequestError,
  EtcdUnavailableError,
  InvalidArgumentError,
  InvalidOptionsError,
  LeadershipLostError,
  type LeadershipLossReason,
  LockBusyError,
  LockLostError,
  type LockLossReason,
  LockReleasedError,
  LockTimeoutError,
  NotLeaderError,
  UnknownCandidateError,
  UnknownJobError,
  ShardCountMismatchError,
  ShardLostError,
  type ShardLossReason,
} from './errors.js';
