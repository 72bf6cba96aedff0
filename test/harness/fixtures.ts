import 'reflect-metadata';
import { once } from 'node:events';
import { type DynamicModule, type INestApplicationContext, type LoggerService, Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3, type IOptions } from 'etcd3';
import { EtcdLockModule, type EtcdLockOptions } from '../../lib/index.js';
import { type TestCertificates, makeCertificates } from './certs.js';
import { EtcdServer, etcdctl } from './etcd.js';
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
  /** Resolves with the keys under `prefix` (oldest first) once there are at least `count`: told by a watch. */
  waitForKeys(prefix: string, count: number): Promise<string[]>;
  /** Resolves once no key is under `prefix`: told by a watch. */
  waitForNoKeys(prefix: string): Promise<void>;
  /** Resolves with the keys under `prefix` (oldest first) once `done(keys)`: read again at each change there. */
  keysWhen(prefix: string, done: (keys: string[]) => boolean): Promise<string[]>;
  /** The certificates etcd serves with (`tls: true` only). */
  readonly certs: TestCertificates;
  /** Runs etcdctl against this etcd, over TLS and as root when the fixture uses them. */
  etcdctl(...args: string[]): string;
}

export interface EtcdFixtureOptions {
  /** Serve over TLS with client-certificate auth; apps and the fixture's client get the client certificate. */
  tls?: boolean;
  /**
   * Enable etcd auth after `setup` (etcdctl commands, run as no one while auth is still off) with a user `root`
   * of this password; the fixture's client logs in as root. Apps get no credentials unless a test gives them.
   */
  auth?: { rootPassword: string; setup?: (etcdctl: (...args: string[]) => string) => void };
}

/**
 * One etcd per test file. After each test every app it opened is closed, and etcd must hold no key and no
 * lease: a test that leaves one fails.
 */
export function useEtcd(options: EtcdFixtureOptions = {}): EtcdFixture {
  let server: EtcdServer;
  let client: Etcd3;
  let certs: TestCertificates | undefined;
  let tlsFlags: string[] = [];
  let credentials: IOptions['credentials'];
  const apps: INestApplicationContext[] = [];
  const ctl = (user: string[], args: string[]) => etcdctl(server.endpoint, ...tlsFlags, ...user, ...args);
  const rootUser = () => (options.auth ? ['--user', `root:${options.auth.rootPassword}`] : []);

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
    get certs() {
      if (!certs) throw new Error('useEtcd({ tls: true }) has certificates; this fixture has none');
      return certs;
    },
    etcdctl: (...args) => ctl(rootUser(), args),
    async app(appOptions = {}, imports = [], providers = [], logger = false) {
      const etcd = credentials ? { credentials, ...appOptions.etcd } : appOptions.etcd;
      const lockModule = EtcdLockModule.forRoot({ hosts: server.endpoint, ttl: 5, ...appOptions, etcd });
      @Module({ imports: [lockModule, ...imports], providers })
      class TestAppModule {}
      const app = await NestFactory.createApplicationContext(TestAppModule, { logger, abortOnError: false });
      apps.push(app);
      return app;
    },
    async waitForKeys(prefix, count) {
      return untilKeys(client, prefix, (keys) => keys.length >= count);
    },
    async waitForNoKeys(prefix) {
      await untilKeys(client, prefix, (keys) => keys.length === 0);
    },
    keysWhen: (prefix, done) => untilKeys(client, prefix, done),
    async leftovers() {
      const keys = await client.getAll().keys();
      const { leases } = await client.leaseClient.leaseLeases({});
      return { keys, leases: leases.map((l) => BigInt(l.ID).toString(16)) };
    },
  };

  beforeAll(async () => {
    if (options.tls) {
      certs = makeCertificates();
      tlsFlags = ['--cacert', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey];
      credentials = {
        rootCertificate: certs.read(certs.ca),
        certChain: certs.read(certs.clientCert),
        privateKey: certs.read(certs.clientKey),
      };
    }
    const tls = certs && { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca };
    server = await EtcdServer.start([], tls);
    if (options.auth) {
      options.auth.setup?.((...args) => ctl([], args));
      ctl([], ['user', 'add', `root:${options.auth.rootPassword}`]);
      ctl([], ['auth', 'enable']);
    }
    const auth = options.auth && { username: 'root', password: options.auth.rootPassword };
    client = new Etcd3({ hosts: server.endpoint, credentials, auth });
  });

  afterEach(async () => {
    await killAll();
    await Promise.all(apps.splice(0).map((app) => app.close().catch(() => undefined)));
    expect(await fixture.leftovers()).toEqual({ keys: [], leases: [] });
  });

  afterAll(async () => {
    client?.close();
    await server?.destroy();
    certs?.remove();
  });

  return fixture;
}

/** Reads the keys under `prefix` (oldest first) after each change there, until `done(keys)`. */
async function untilKeys(client: Etcd3, prefix: string, done: (keys: string[]) => boolean): Promise<string[]> {
  const watcher = await client.watch().prefix(prefix).create();
  try {
    for (;;) {
      const changed = once(watcher, 'data');
      const keys = await client.getAll().prefix(prefix).sort('Create', 'Ascend').keys();
      if (done(keys)) return keys;
      await changed;
    }
  } finally {
    await watcher.cancel();
  }
}
