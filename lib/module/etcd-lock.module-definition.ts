import { ConfigurableModuleBuilder } from '@nestjs/common';
import { EtcdLockOptions } from '../options/etcd-lock-options.interface.js';

export const { ConfigurableModuleClass, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } = new ConfigurableModuleBuilder<EtcdLockOptions>({
  optionsInjectionToken: EtcdLockOptions,
  moduleName: 'EtcdLock',
})
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
