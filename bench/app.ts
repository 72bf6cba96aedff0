import 'reflect-metadata';
import { type DynamicModule, type INestApplicationContext, Module, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EtcdLockModule, type EtcdLockOptions } from 'nestjs-etcd-lock';

/**
 * A Nest application context with the lock module, as an app instance of a replica would have. `imports` adds
 * modules (`ScheduleModule.forRoot()` where the app's `@Interval` timers must fire by themselves).
 */
export async function startApp(
  hosts: readonly string[],
  options: EtcdLockOptions = {},
  providers: Provider[] = [],
  imports: DynamicModule[] = [],
): Promise<INestApplicationContext> {
  @Module({ imports: [EtcdLockModule.forRoot({ hosts: [...hosts], ttl: 10, ...options }), ...imports], providers })
  class BenchAppModule {}
  return NestFactory.createApplicationContext(BenchAppModule, { logger: false });
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between processes on one machine. */
export const now = (): number => performance.timeOrigin + performance.now();
