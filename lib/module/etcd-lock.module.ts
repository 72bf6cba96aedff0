import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { RESOLVED_OPTIONS, RUNNER_TOKEN } from '../options/etcd-lock.constants.js';
import { EtcdLockEvents } from '../events/etcd-lock.events.js';
import { EtcdLockExplorer } from '../decorators/explorer.js';
import { GuardedRunner } from '../decorators/guarded-runner.js';
import { GuardedRuns } from '../decorators/guarded-runs.js';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { LeadershipWorkers } from '../decorators/leadership-workers.js';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { ConfigurableModuleClass } from './etcd-lock.module-definition.js';
import { resolveOptions } from '../options/etcd-lock.options.js';
import { EtcdLockOptions } from '../options/etcd-lock-options.interface.js';
import { LockService } from '../locks/lock.service.js';
import { EtcdSessionService } from '../session/session.service.js';
import { ShardingService } from '../sharding/sharding.service.js';
import { SemaphoreService } from '../semaphores/semaphore.service.js';
import { ReadWriteLockService } from '../rwlocks/read-write-lock.service.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { HoldPaths } from '../locks/hold-paths.js';
import { ScheduledJobsService } from '../scheduling/scheduled-jobs.service.js';

/**
 * `EtcdLockModule.forRoot(options)` or `forRootAsync({ imports, inject, useFactory | useClass | useExisting })`.
 * Global unless `isGlobal: false`. Options are validated when the app starts.
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    { provide: RESOLVED_OPTIONS, useFactory: resolveOptions, inject: [EtcdLockOptions] },
    // The explorer's onModuleInit runs first: a misplaced decorator fails start-up before a lease is granted.
    EtcdLockExplorer,
    EtcdLockEvents,
    EtcdSessionService,
    HoldPaths,
    LockService,
    LeaderElectionService,
    ShardingService,
    SemaphoreService,
    ReadWriteLockService,
    ScheduledJobsService,
    GuardedRunner,
    GuardedRuns,
    { provide: RUNNER_TOKEN, useExisting: GuardedRunner },
    LeadershipWorkers,
    EtcdConnection,
    DeletionWatches,
    Telemetry,
  ],
  // RESOLVED_OPTIONS for the testing module's controls; EtcdConnection for the dashboard module.
  exports: [
    LockService,
    LeaderElectionService,
    ShardingService,
    SemaphoreService,
    ReadWriteLockService,
    ScheduledJobsService,
    EtcdSessionService,
    EtcdLockEvents,
    RUNNER_TOKEN,
    RESOLVED_OPTIONS,
    EtcdConnection,
  ],
})
export class EtcdLockModule extends ConfigurableModuleClass {
  /** Registers the module (global by default) with options known now. */
  declare static forRoot: typeof ConfigurableModuleClass.forRoot;
  /** Registers the module with options from a factory, a class or an existing provider. */
  declare static forRootAsync: typeof ConfigurableModuleClass.forRootAsync;
}
