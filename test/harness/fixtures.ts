import 'reflect-metadata';
import { type DynamicModule, type INestApplicationContext, type LoggerService, Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, type EtcdLockOptions } from '../../lib/index.js';
import { EtcdServer } from './etcd.js';
import { killAll } from './processes.js';

export interface EtcdFixture {
  readonly server: EtcdServer;
  readonly endpoint: string;
  /** A plain etcd3 client for assertions and for playing "someone else". */
  readonly client: Etcd3;
  /** A Nest application context with `EtcdLockModule.forRoot({ hosts: endpoint, ...options })`. */
  app(
    options?: EtcdLockOptions,
    imports?: Array<Type | DynamicModule>,
    providers?: Type[],
    logger?: LoggerService | false,
  ): Promise<INestApplicationContext>;
  /** Keys and leases etcd holds now. */
  leftovers(): Promise<{ keys: string[]; leases: string[] }>;
}

/**
 * One etcd per test file. After each test every app it opened is closed, and etcd must hold no key and no
 * lease: a test that leaves one fails.
 */
export function useEtcd(): EtcdFixture {
  let server: EtcdServer;
  let client: Etcd3;
  const apps: INestApplicationContext[] = [];

  const fixture: EtcdFixture = {
    get server() {
      return server;
    },
    get endpoint() {
      return server.endpoint;
    },
    get client() {
      return client;
    },
    async app(options = {}, imports = [], providers = [], logger = false) {
      @Module({ imports: [EtcdLockModule.forRoot({ hosts: server.endpoint, ttl: 5, ...options }), ...imports], providers })
      class TestAppModule {}
      const app = await NestFactory.createApplicationContext(TestAppModule, { logger, abortOnError: false });
      apps.push(app);
      return app;
    },
    async leftovers() {
      const keys = await client.getAll().keys();
      const { leases } = await client.leaseClient.leaseLeases({});
      return { keys, leases: leases.map((l) => BigInt(l.ID).toString(16)) };
    },
  };

  beforeAll(async () => {
    server = await EtcdServer.start();
    client = new Etcd3({ hosts: server.endpoint });
  });

  afterEach(async () => {
    await killAll();
    await Promise.all(apps.splice(0).map((app) => app.close().catch(() => undefined)));
    expect(await fixture.leftovers()).toEqual({ keys: [], leases: [] });
  });

  afterAll(async () => {
    client?.close();
    await server?.destroy();
  });

  return fixture;
}
