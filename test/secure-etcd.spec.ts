import 'reflect-metadata';
import { ConsoleLogger, type INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdAccessDeniedError, type EtcdLockOptions, EtcdUnavailableError, LeaderElectionService, LockService } from '../lib/index.js';
import { type EtcdFixture, useEtcd } from './harness/fixtures.js';

/** Collects every line the app logs, at any level. */
class CapturingLogger extends ConsoleLogger {
  readonly lines: string[] = [];
  override log(message: unknown) {
    this.lines.push(String(message));
  }
  override error(message: unknown, ...rest: unknown[]) {
    this.lines.push([message, ...rest].map(String).join(' '));
  }
  override warn(message: unknown) {
    this.lines.push(String(message));
  }
  override debug(message: unknown) {
    this.lines.push(String(message));
  }
  override verbose(message: unknown) {
    this.lines.push(String(message));
  }
}

/** Everything a failed start-up exposes: the error's messages and stacks down its cause chain, and the logs. */
function exposedText(error: unknown, logger: CapturingLogger): string {
  const parts = [...logger.lines];
  for (let err = error; err instanceof Error; err = err.cause) parts.push(err.message, err.stack ?? '');
  return parts.join('\n');
}

async function startFailure(etcd: EtcdFixture, options: EtcdLockOptions, logger: CapturingLogger) {
  const started = performance.now();
  const error = await etcd.app(options, [], [], logger).then(
    () => undefined,
    (err: unknown) => err,
  );
  return { error, elapsed: performance.now() - started };
}

/** Everything the library does, as a user would: locks, fencing, holder reads, watches, elections. */
async function exerciseEverything(app: INestApplicationContext, dataKey: string): Promise<void> {
  const locks = app.get(LockService);
  const lock = await locks.acquire('job', { value: 'worker' });
  expect(await locks.tryAcquire('job')).toBeNull();
  expect((await locks.holder('job'))?.value).toBe('worker');
  const result = await lock.fencedTxn().put(dataKey, 'written under the lock').commit();
  expect(result.succeeded).toBe(true);
  const watched = firstValueFrom(locks.watch('job').pipe(filter((holder) => holder === null)));
  await lock.release();
  await watched;
  expect(await locks.withLock('job', async (l) => l.fencingToken)).toBeGreaterThan(lock.fencingToken);
  const election = app.get(LeaderElectionService);
  await election.campaign('primary');
  expect(election.isLeader('primary')).toBe(true);
  expect(await election.leader('primary')).not.toBeNull();
  await election.resign('primary');
}

describe('etcd with auth enabled: a least-privilege user', () => {
  const rootPassword = 'root-secret-Xq7';
  const appPassword = 'app-secret-Zk4';
  const etcd = useEtcd({
    auth: {
      rootPassword,
      // The README's "Secure etcd" commands: one role, readwrite on the library's prefix (and the app's data).
      setup: (etcdctl) => {
        etcdctl('role', 'add', 'orders-app');
        etcdctl('role', 'grant-permission', 'orders-app', '--prefix=true', 'readwrite', 'orders/');
        etcdctl('user', 'add', `orders-app:${appPassword}`);
        etcdctl('user', 'grant-role', 'orders-app', 'orders-app');
        etcdctl('role', 'add', 'orders-reader');
        etcdctl('role', 'grant-permission', 'orders-reader', '--prefix=true', 'read', 'orders/');
        etcdctl('user', 'add', `orders-reader:${appPassword}`);
        etcdctl('user', 'grant-role', 'orders-reader', 'orders-reader');
        // The key roots of the library's first release only: semaphores and read/write locks came later.
        etcdctl('role', 'add', 'orders-partial');
        for (const root of ['lock', 'election', 'shard', 'member', 'assignment']) {
          etcdctl('role', 'grant-permission', 'orders-partial', '--prefix=true', 'readwrite', `orders/${root}/`);
        }
        etcdctl('user', 'add', `orders-partial:${appPassword}`);
        etcdctl('user', 'grant-role', 'orders-partial', 'orders-partial');
      },
    },
  });
  const as = (username: string, password: string) => ({ etcd: { auth: { username, password } } });

  it('can do everything the library does with readwrite on its prefix alone', async () => {
    const app = await etcd.app({ prefix: 'orders/', ...as('orders-app', appPassword) });
    await exerciseEverything(app, 'orders/data/total');
    await etcd.client.delete().key('orders/data/total');
  });

  it('with a wrong password: start-up fails at once with EtcdAccessDeniedError, and the password is nowhere', async () => {
    const logger = new CapturingLogger();
    const wrong = 'not-the-password-Wm2';
    const options = { prefix: 'orders/', connectTimeout: 30_000, ...as('orders-app', wrong) };
    const { error, elapsed } = await startFailure(etcd, options, logger);
    expect(error).toBeInstanceOf(EtcdAccessDeniedError);
    expect((error as EtcdAccessDeniedError).reason).toBe('authentication-failed');
    expect((error as Error).message).toContain("'etcd.auth'");
    // Not retried until connectTimeout: etcd said no, and asking again will not change that.
    expect(elapsed).toBeLessThan(30_000);
    const exposed = exposedText(error, logger);
    expect(exposed).not.toContain(wrong);
    expect(exposed).not.toContain(appPassword);
  });

  it('with no credentials: start-up fails with EtcdAccessDeniedError', async () => {
    const { error } = await startFailure(etcd, { prefix: 'orders/', connectTimeout: 30_000 }, new CapturingLogger());
    expect(error).toBeInstanceOf(EtcdAccessDeniedError);
    expect((error as EtcdAccessDeniedError).reason).toBe('authentication-failed');
  });

  it.each([
    ['a prefix its role does not cover', 'payments/', 'orders-app', "'payments/lock/'"],
    ['read-only permission on the prefix', 'orders/', 'orders-reader', "'orders/lock/'"],
    ['readwrite on every key root but semaphore/ and rwlock/', 'orders/', 'orders-partial', "'orders/semaphore/'"],
  ])('with %s: start-up fails with EtcdAccessDeniedError naming the keys', async (_, prefix, user, named) => {
    const logger = new CapturingLogger();
    const { error } = await startFailure(etcd, { prefix, ...as(user, appPassword) }, logger);
    expect(error).toBeInstanceOf(EtcdAccessDeniedError);
    expect((error as EtcdAccessDeniedError).reason).toBe('permission-denied');
    expect((error as Error).message).toContain(named);
    expect(exposedText(error, logger)).not.toContain(appPassword);
    // The lease granted before the check was revoked (the fixture also checks that no lease is left).
    expect((await etcd.leftovers()).leases).toEqual([]);
  });
});

describe('etcd over TLS with client certificates', () => {
  const etcd = useEtcd({ tls: true });

  it('works with the CA and a client certificate in the etcd options', async () => {
    const app = await etcd.app();
    await exerciseEverything(app, 'data/total');
    await etcd.client.delete().key('data/total');
  });

  it('with a wrong CA: start-up fails within connectTimeout, says why, and shows no key material', async () => {
    const logger = new CapturingLogger();
    const credentials = {
      rootCertificate: etcd.certs.read(etcd.certs.wrongCa),
      certChain: etcd.certs.read(etcd.certs.clientCert),
      privateKey: etcd.certs.read(etcd.certs.clientKey),
    };
    const { error, elapsed } = await startFailure(etcd, { connectTimeout: 1000, etcd: { credentials } }, logger);
    expect(error).toBeInstanceOf(EtcdUnavailableError);
    expect((error as Error).message).toMatch(/Could not start an etcd session within 1000 ms: .*certificate/);
    expect((error as Error).message).toContain(etcd.endpoint);
    expect(elapsed).toBeLessThan(5000);
    const keyBody = etcd.certs.read(etcd.certs.clientKey).toString().split('\n')[1];
    expect(exposedText(error, logger)).not.toContain(keyBody);
  });

  it('without a client certificate: start-up fails within connectTimeout and says why', async () => {
    const credentials = { rootCertificate: etcd.certs.read(etcd.certs.ca) };
    const { error } = await startFailure(etcd, { connectTimeout: 1000, etcd: { credentials } }, new CapturingLogger());
    expect(error).toBeInstanceOf(EtcdUnavailableError);
    expect((error as Error).message).toMatch(/certificate/);
  });
});
