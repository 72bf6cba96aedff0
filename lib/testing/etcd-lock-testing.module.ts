import { type DynamicModule, Module } from '@nestjs/common';
import type { Etcd3 } from 'etcd3';
import { InvalidOptionsError } from '../errors.js';
import { EtcdLockModule } from '../module/etcd-lock.module.js';
import type { EtcdLockOptions } from '../module/etcd-lock-options.interface.js';
import { describe } from '../util/validation.js';
import { EtcdLockTesting } from './etcd-lock-testing.service.js';
import { InMemoryEtcd } from './in-memory-etcd.js';

/** `EtcdLockModule`'s options, less the connection ones: the testing module brings its own etcd. */
export interface EtcdLockTestingOptions extends Omit<EtcdLockOptions, 'hosts' | 'etcd' | 'client'> {
  /**
   * The in-memory etcd to use. Default: a new one per module. Pass the same one to several test apps to run
   * replicas in one process.
   */
  readonly etcd?: InMemoryEtcd;
}

/**
 * `EtcdLockModule` for tests, with no etcd server: the real `LockService`, `LeaderElectionService`, decorators,
 * events and session lifecycle, on an `InMemoryEtcd`, plus `EtcdLockTesting` controls (make this instance
 * leader or follower, hold a lock from another replica, lose a lock or the session). Global, like `EtcdLockModule`.
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module class, configured through its static forRoot
export class EtcdLockTestingModule {
  /** Registers `EtcdLockModule` on an in-memory etcd, and the `EtcdLockTesting` controls. */
  static forRoot(options: EtcdLockTestingOptions = {}): DynamicModule {
    const { etcd = new InMemoryEtcd(), ...rest } = options ?? {};
    if (!(etcd instanceof InMemoryEtcd)) {
      throw new InvalidOptionsError('etcd', `must be an InMemoryEtcd (from 'nestjs-etcd-lock/testing'), got ${describe(etcd)}`);
    }
    for (const field of ['hosts', 'client'] as const) {
      if (field in rest) throw new InvalidOptionsError(field, 'is not used by EtcdLockTestingModule, which runs etcd in memory');
    }
    return {
      module: EtcdLockTestingModule,
      global: true,
      imports: [EtcdLockModule.forRoot({ ...rest, client: etcd as unknown as Etcd3 })],
      providers: [{ provide: InMemoryEtcd, useValue: etcd }, EtcdLockTesting],
      exports: [EtcdLockModule, InMemoryEtcd, EtcdLockTesting],
    };
  }
}
