import { type DynamicModule, Module } from '@nestjs/common';
import { InvalidOptionsError } from '../errors.js';
import { EtcdLockModule } from '../module/etcd-lock.module.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { ETCD_PORT } from '../options/etcd-lock.constants.js';
import type { EtcdLockOptions } from '../options/etcd-lock-options.interface.js';
import { describe } from '../util/validation.js';
import { EtcdLockTesting } from './etcd-lock-testing.service.js';
import { InMemoryEtcd } from './in-memory-etcd.js';
import type { Clock } from '../clock/clock.js';

/** `EtcdLockModule`'s options, less the connection ones: the testing module brings its own etcd. */
export interface EtcdLockTestingOptions extends Omit<EtcdLockOptions, 'hosts' | 'etcd' | 'client'> {
  /**
   * The in-memory etcd to use. Default: a new one per module. Pass the same one to several test apps to run
   * replicas in one process.
   */
  readonly etcd?: InMemoryEtcd;
  /**
   * The clock of the app and of its in-memory etcd: a `ManualClock` lets the test move time by hand. Default: the
   * `etcd`'s clock (the system's unless it was made with one).
   */
  readonly clock?: Clock;
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
    const { etcd = new InMemoryEtcd({ clock: options?.clock }), ...given } = options ?? {};
    if (!(etcd instanceof InMemoryEtcd)) {
      throw new InvalidOptionsError('etcd', `must be an InMemoryEtcd (from 'nestjs-etcd-lock/testing'), got ${describe(etcd)}`);
    }
    // One clock for the app and its etcd: leases must expire on the time the session renews them on.
    if (given.clock !== undefined && given.clock !== etcd.clock) {
      throw new InvalidOptionsError('clock', 'must be the clock of the InMemoryEtcd given in etcd (new InMemoryEtcd({ clock }))');
    }
    const rest = { ...given, clock: etcd.clock };
    for (const field of ['hosts', 'client'] as const) {
      if (field in rest) throw new InvalidOptionsError(field, 'is not used by EtcdLockTestingModule, which runs etcd in memory');
    }
    return {
      module: EtcdLockTestingModule,
      global: true,
      imports: [EtcdLockModule.forRoot(rest)],
      // Global, so EtcdLockModule's session finds the in-memory etcd as its port to etcd.
      providers: [{ provide: InMemoryEtcd, useValue: etcd }, { provide: ETCD_PORT, useValue: portOf(etcd) }, EtcdLockTesting],
      exports: [EtcdLockModule, InMemoryEtcd, ETCD_PORT, EtcdLockTesting],
    };
  }
}

/**
 * The in-memory etcd as the library's port (its port methods are internal, so the class does not declare the
 * interface in the published types; this checks it still implements it).
 */
function portOf(etcd: InMemoryEtcd): EtcdPort {
  return etcd;
}
