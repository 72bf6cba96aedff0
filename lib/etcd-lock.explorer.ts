import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { bindRunner } from './decorators/guarded-method.js';
import { LEADER_ONLY_METADATA, SINGLETON_METADATA } from './etcd-lock.constants.js';
import { LeaderElectionService } from './leader-election.service.js';

/**
 * Finds `@LeaderOnly` and `@Singleton` methods in every provider and controller at `onModuleInit`: binds each
 * instance to this app's runner and declares the elections they name, so campaigning starts at bootstrap.
 */
@Injectable()
export class EtcdLockExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly elections: LeaderElectionService,
  ) {}

  onModuleInit(): void {
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      const instance = wrapper.instance as object | undefined;
      const prototype = instance ? Object.getPrototypeOf(instance) : wrapper.metatype?.prototype;
      if (!prototype || typeof prototype !== 'object') continue;
      let guarded = false;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const method = prototype[name];
        const leaderOnly = Reflect.getMetadata(LEADER_ONLY_METADATA, method) as { election?: string } | undefined;
        if (leaderOnly) this.elections.declare(leaderOnly.election ?? this.elections.defaultElection);
        guarded ||= leaderOnly !== undefined || Reflect.hasMetadata(SINGLETON_METADATA, method);
      }
      if (guarded && instance && wrapper.isDependencyTreeStatic()) bindRunner(instance);
    }
  }
}
