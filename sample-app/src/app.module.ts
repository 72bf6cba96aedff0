import { type DynamicModule, Inject, Injectable, Module, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule } from 'nestjs-etcd-lock';
import { AccountsService } from './accounts.service.js';
import { AppController } from './app.controller.js';
import { SAMPLE_CONFIG, type SampleConfig, configFromEnv } from './config.js';
import { DirectoryService } from './directory.service.js';
import { FeedService } from './feed.service.js';
import { JobsService } from './jobs.service.js';
import { MetricsController } from './metrics.js';
import { PartnerService } from './partner.service.js';
import { TenantsService } from './tenants.service.js';

/** Where one replica keeps its locks and its data. */
export interface SampleBackend {
  /** `EtcdLockModule.forRoot(...)`, or a module that stands in for it. */
  readonly locks: DynamicModule;
  /** The app's own data client, provided as `Etcd3` (the lock module owns another, which it closes after revoking). */
  readonly data: Provider<Etcd3>;
}

/** The real backend: the etcd cluster the configuration names. */
export function etcdBackend(config: SampleConfig): SampleBackend {
  return {
    locks: EtcdLockModule.forRoot({
      hosts: config.etcdHosts,
      prefix: config.prefix,
      identity: config.identity,
      ttl: config.ttl,
    }),
    data: { provide: Etcd3, useFactory: () => new Etcd3({ hosts: config.etcdHosts }) },
  };
}

/** Closes the app's data client last, after the lock module has revoked its lease. */
@Injectable()
class DataClientCloser implements OnApplicationShutdown {
  constructor(@Inject(Etcd3) private readonly client: Pick<Etcd3, 'close'>) {}
  onApplicationShutdown(): void {
    this.client.close();
  }
}

@Module({
  controllers: [AppController, MetricsController],
  providers: [AccountsService, JobsService, DirectoryService, FeedService, TenantsService, PartnerService, DataClientCloser],
})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module class, configured through its static forRoot
export class AppModule {
  /** One replica of the app, configured by `config` (default: the environment), on `backend` (default: etcd). */
  static forRoot(config: SampleConfig = configFromEnv(), backend: SampleBackend = etcdBackend(config)): DynamicModule {
    return {
      module: AppModule,
      imports: [ScheduleModule.forRoot(), backend.locks],
      providers: [{ provide: SAMPLE_CONFIG, useValue: config }, backend.data],
    };
  }
}
