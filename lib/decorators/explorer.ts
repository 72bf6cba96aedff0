import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { bindRunner } from './guarded-method.js';
import type { OnLeadershipMetadata } from './on-leadership.decorator.js';
import {
  LEADER_ONLY_METADATA,
  MAX_CONCURRENT_METADATA,
  ON_LEADERSHIP_METADATA,
  SHARDED_METADATA,
  SINGLETON_METADATA,
  SCHEDULED_JOB_METADATA,
} from '../options/etcd-lock.constants.js';
import type { ScheduledJobMetadata } from '../scheduling/scheduled-job.decorator.js';
import { ScheduledJobsService } from '../scheduling/scheduled-jobs.service.js';
import { assertScheduled, fireTimesOf } from '../scheduling/schedule-metadata.js';
import type { ShardedOptions } from './sharded.decorator.js';
import { ShardingService } from '../sharding/sharding.service.js';
import { EtcdLockError } from '../errors.js';
import { LeaderElectionService } from '../election/leader-election.service.js';
import { LeadershipWorkers } from './leadership-workers.js';

/**
 * Finds `@LeaderOnly`, `@Singleton`, `@Sharded` and `@OnLeadership` methods in every provider and controller at
 * `onModuleInit`: binds each instance to this app's runner, hands `@OnLeadership` methods to the workers, and
 * declares the elections and sharding groups they name, so campaigning and membership start at bootstrap.
 */
@Injectable()
export class EtcdLockExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly elections: LeaderElectionService,
    private readonly workers: LeadershipWorkers,
    private readonly sharding: ShardingService,
    private readonly jobs: ScheduledJobsService,
  ) {
    this.checkDeclarations();
  }

  /**
   * Before any lifecycle hook (so before the session's lease is granted; Nest runs a module's hooks concurrently):
   * an `@OnLeadership` method needs one instance for the app's lifetime, which a request- or transient-scoped
   * provider does not have; and a sharding group must have one shard count in the app.
   */
  private checkDeclarations(): void {
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      const prototype = wrapper.metatype?.prototype as Record<string, unknown> | undefined;
      if (!prototype || typeof prototype !== 'object') continue;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const method = prototype[name] as object;
        if (wrapper.scope && Reflect.hasMetadata(ON_LEADERSHIP_METADATA, method)) throw this.scopeError(wrapper, name);
        if (Reflect.hasMetadata(SCHEDULED_JOB_METADATA, method))
          assertScheduled(method, `${wrapper.metatype?.name ?? wrapper.name}.${name}`);
        const sharded = Reflect.getMetadata(SHARDED_METADATA, method) as { group: string; options: ShardedOptions } | undefined;
        if (sharded) {
          const { shards, rebalanceDelayMs } = sharded.options;
          this.sharding.declare(sharded.group, { shards, rebalanceDelayMs }, `${wrapper.metatype?.name ?? wrapper.name}.${name}`);
        }
      }
    }
  }

  private scopeError(wrapper: InstanceWrapper, method: string): EtcdLockError {
    const label = `${wrapper.metatype?.name ?? wrapper.name}.${method}`;
    return new EtcdLockError(`@OnLeadership ${label} needs a singleton provider (not request- or transient-scoped)`);
  }

  async onModuleInit(): Promise<void> {
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      const instance = wrapper.instance as object | undefined;
      const prototype = instance ? Object.getPrototypeOf(instance) : wrapper.metatype?.prototype;
      if (!prototype || typeof prototype !== 'object') continue;
      let guarded = false;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const method = prototype[name];
        const leaderOnly = Reflect.getMetadata(LEADER_ONLY_METADATA, method) as { election?: string } | undefined;
        if (leaderOnly) this.elections.declare(leaderOnly.election ?? this.elections.defaultElection);
        const onLeadership = Reflect.getMetadata(ON_LEADERSHIP_METADATA, method) as OnLeadershipMetadata | undefined;
        if (onLeadership) this.addWorker(wrapper, instance, name, onLeadership);
        const job = Reflect.getMetadata(SCHEDULED_JOB_METADATA, method) as ScheduledJobMetadata | undefined;
        if (job) await this.addJob(wrapper, instance, name, method, job);
        guarded ||=
          leaderOnly !== undefined ||
          job !== undefined ||
          [SHARDED_METADATA, SINGLETON_METADATA, MAX_CONCURRENT_METADATA].some((key) => Reflect.hasMetadata(key, method));
      }
      if (guarded && instance && wrapper.isDependencyTreeStatic()) bindRunner(instance);
    }
  }

  private async addJob(
    wrapper: InstanceWrapper,
    instance: object | undefined,
    method: string,
    fn: object,
    job: ScheduledJobMetadata,
  ): Promise<void> {
    const label = `${wrapper.metatype?.name ?? wrapper.name}.${method}`;
    // Runs the library starts (catch-up, retries, triggers) need the one instance the schedule's ticks call.
    if (!instance || !wrapper.isDependencyTreeStatic()) {
      throw new EtcdLockError(`@ScheduledJob ${label} needs a singleton provider (not request- or transient-scoped)`);
    }
    const fireTimes = await fireTimesOf(fn, label);
    this.jobs.declare({ name: job.name, label, fireTimes, options: job.options, invoke: () => job.original.apply(instance, []) });
  }

  private addWorker(wrapper: InstanceWrapper, instance: object | undefined, method: string, meta: OnLeadershipMetadata): void {
    // A provider made request-scoped by a dependency of its own is only found here, once instances exist.
    if (!instance || !wrapper.isDependencyTreeStatic()) throw this.scopeError(wrapper, method);
    const label = `${wrapper.metatype?.name ?? wrapper.name}.${method}`;
    this.workers.add({ instance, method, election: meta.election ?? this.elections.defaultElection, label });
  }
}
