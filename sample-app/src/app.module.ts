import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule } from 'nestjs-etcd-lock';
import { AccountsService } from './accounts.service.js';
import { AppController } from './app.controller.js';
import { SAMPLE_CONFIG, configFromEnv, type SampleConfig } from './config.js';
import { DirectoryService } from './directory.service.js';
import { JobsService } from './jobs.service.js';

@Module({
  providers: [{ provide: SAMPLE_CONFIG, useFactory: () => configFromEnv() }],
  exports: [SAMPLE_CONFIG],
})
class ConfigModule {}

/** The app's own etcd client, for its data (the lock module owns another, which it closes after revoking). */
@Module({
  imports: [ConfigModule],
  providers: [
    {
      provide: Etcd3,
      inject: [SAMPLE_CONFIG],
      useFactory: (config: SampleConfig) => new Etcd3({ hosts: config.etcdHosts }),
    },
  ],
  exports: [Etcd3],
})
class EtcdClientModule {
  constructor(private readonly client: Etcd3) {}
  onApplicationShutdown() {
    this.client.close();
  }
}

@Module({
  imports: [
    ConfigModule,
    EtcdClientModule,
    ScheduleModule.forRoot(),
    EtcdLockModule.forRootAsync({
      imports: [ConfigModule],
      inject: [SAMPLE_CONFIG],
      useFactory: (config: SampleConfig) => ({
        hosts: config.etcdHosts,
        prefix: config.prefix,
        identity: config.identity,
        ttl: config.ttl,
      }),
    }),
  ],
  controllers: [AppController],
  providers: [AccountsService, JobsService, DirectoryService],
})
export class AppModule {}
