import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, EtcdSessionService, EtcdUnavailableError, InvalidOptionsError, LockService } from '../lib/index.js';
import type { EtcdLockOptions } from '../lib/index.js';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { EtcdServer, freePort, scratchDir } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

async function start(module: unknown) {
  return NestFactory.createApplicationContext(module as never, { logger: false, abortOnError: false });
}

describe('EtcdLockModule options', () => {
  const bad: Array<[string, Record<string, unknown>]> = [
    ['hosts', { hosts: [] }],
    ['hosts', { hosts: 5 }],
    ['hosts', { hosts: ['http://a:1', 'https://b:2'] }],
    ['ttl', { ttl: 1 }],
    ['ttl', { ttl: 2.5 }],
    ['ttl', { ttl: '10' }],
    ['prefix', { prefix: 5 }],
    ['prefix', { prefix: 'app\u001b[2J/' }],
    ['prefix', { prefix: '/app/' }],
    ['prefix', { prefix: 'app//x/' }],
    ['ttl', { ttl: 3_000_000 }],
    ['requestTimeout', { requestTimeout: 2 ** 31 }],
    ['shutdownTimeout', { shutdownTimeout: 3e9 }],
    ['connectTimeout', { connectTimeout: Number.POSITIVE_INFINITY }],
    ['election', { election: 'lead\rer' }],
    ['identity', { identity: '' }],
    ['connectTimeout', { connectTimeout: -1 }],
    ['requestTimeout', { requestTimeout: Number.NaN }],
    ['etcd', { etcd: 'tls' }],
    ['etcd.hosts', { etcd: { hosts: 'x' } }],
    ['client', { client: {} }],
    ['tll', { tll: 10 }],
  ];

  it.each(bad)('rejects a bad %s at start-up with InvalidOptionsError naming it', async (field, options) => {
    @Module({ imports: [EtcdLockModule.forRoot(options as EtcdLockOptions)] })
    class BadModule {}
    const error = await start(BadModule).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(InvalidOptionsError);
    expect((error as InvalidOptionsError).field).toBe(field);
    expect((error as Error).message).toContain(`'${field}'`);
  });

  it('fails start-up with EtcdUnavailableError naming the endpoints when etcd is unreachable, without hanging', async () => {
    const deadEndpoint = `http://127.0.0.1:${await freePort()}`;
    @Module({ imports: [EtcdLockModule.forRoot({ hosts: deadEndpoint, connectTimeout: 500 })] })
    class DeadModule {}
    const started = performance.now();
    const error = await start(DeadModule).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(EtcdUnavailableError);
    expect((error as Error).message).toContain(deadEndpoint);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('waits for an etcd that starts after the app, within connectTimeout (no crash loop beside a starting etcd)', async () => {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const late = new EtcdServer({
      name: 'late',
      clientPort,
      peerPort,
      dataDir: mkdtempSync(join(scratchDir(), 'etcd-late-')),
      initialCluster: `late=http://127.0.0.1:${peerPort}`,
      initialState: 'new',
    });
    @Module({ imports: [EtcdLockModule.forRoot({ hosts: late.endpoint, connectTimeout: 10_000 })] })
    class LateModule {}
    // The first grant meets a closed port (etcd takes a few hundred ms to serve); start-up retries until it serves.
    const starting = start(LateModule);
    await late.start();
    const app = await starting;
    try {
      expect(app.get(EtcdSessionService).status().alive).toBe(true);
    } finally {
      await app.close();
      await late.destroy();
    }
  });

  it('forRootAsync with useFactory and inject', async () => {
    @Injectable()
    class Config {
      readonly endpoint = etcd.endpoint;
    }
    @Module({ providers: [Config], exports: [Config] })
    class ConfigModule {}
    @Module({
      imports: [
        EtcdLockModule.forRootAsync({
          imports: [ConfigModule],
          inject: [Config],
          useFactory: (config: Config) => ({ hosts: config.endpoint, identity: 'from-factory' }),
        }),
      ],
    })
    class AppModule {}
    const app = await start(AppModule);
    const lock = await app.get(LockService).acquire('async');
    expect(lock.value).toBe('from-factory');
    await lock.release();
    await app.close();
  });

  it('forRootAsync with useClass', async () => {
    @Injectable()
    class OptionsFactory {
      create(): EtcdLockOptions {
        return { hosts: etcd.endpoint, identity: 'from-class' };
      }
    }
    @Module({ imports: [EtcdLockModule.forRootAsync({ useClass: OptionsFactory })] })
    class AppModule {}
    const app = await start(AppModule);
    expect((await app.get(LockService).acquire('async')).value).toBe('from-class');
    await app.close();
  });

  it('uses a client passed in and does not close it', async () => {
    const client = new Etcd3({ hosts: etcd.endpoint });
    @Module({ imports: [EtcdLockModule.forRoot({ client })] })
    class AppModule {}
    const app = await start(AppModule);
    await (await app.get(LockService).acquire('own-client')).release();
    await app.close();
    await client.put('still-open').value('yes');
    expect(await client.get('still-open').string()).toBe('yes');
    await client.delete().key('still-open');
    client.close();
  });

  it('is global: a feature module injects LockService without importing it', async () => {
    @Injectable()
    class Feature {
      constructor(readonly locks: LockService) {}
    }
    @Module({ providers: [Feature] })
    class FeatureModule {}
    @Module({ imports: [EtcdLockModule.forRoot({ hosts: etcd.endpoint }), FeatureModule] })
    class AppModule {}
    const app = await start(AppModule);
    expect(app.get(Feature).locks).toBeInstanceOf(LockService);
    await app.close();
  });
});
