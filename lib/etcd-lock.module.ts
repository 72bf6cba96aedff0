import { Module } from '@nestjs/common';
import { RESOLVED_OPTIONS } from './etcd-lock.constants.js';
import { ConfigurableModuleClass } from './etcd-lock.module-definition.js';
import { resolveOptions } from './etcd-lock.options.js';
import { EtcdLockOptions } from './interfaces/etcd-lock-options.interface.js';
import { LockService } from './lock.service.js';
import { EtcdSessionService } from './session.service.js';

/**
 * `EtcdLockModule.forRoot(options)` or `forRootAsync({ imports, inject, useFactory | useClass | useExisting })`.
 * Global unless `isGlobal: false`. Options are validated when the app starts.
 */
@Module({
  providers: [
    { provide: RESOLVED_OPTIONS, useFactory: resolveOptions, inject: [EtcdLockOptions] },
    EtcdSessionService,
    LockService,
  ],
  exports: [LockService],
})
export class EtcdLockModule extends ConfigurableModuleClass {}
