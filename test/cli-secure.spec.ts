import { LockService } from '../lib/index.js';
import { runCli } from './harness/cli.js';
import { useEtcd } from './harness/fixtures.js';

const rootPassword = 'root-secret';
const readerPassword = 'reader-secret';
const etcd = useEtcd({
  tls: true,
  auth: {
    rootPassword,
    setup: (etcdctl) => {
      etcdctl('role', 'add', 'orders-reader');
      etcdctl('role', 'grant-permission', 'orders-reader', '--prefix=true', 'read', 'orders/');
      etcdctl('user', 'add', `orders-reader:${readerPassword}`);
      etcdctl('user', 'grant-role', 'orders-reader', 'orders-reader');
    },
  },
});

const tlsFlags = () => ['--cacert', etcd.certs.ca, '--cert', etcd.certs.clientCert, '--key', etcd.certs.clientKey];

describe('The admin CLI against etcd with TLS and auth', () => {
  it('connects with etcdctl’s flags or its environment variables; says which credentials were refused (exit 4)', async () => {
    const app = await etcd.app({ prefix: 'orders/', etcd: { auth: { username: 'root', password: rootPassword } } });
    const lock = await app.get(LockService).acquire('invoice:7');

    const byFlags = await runCli([
      '--endpoints',
      etcd.endpoint,
      ...tlsFlags(),
      '--user',
      `root:${rootPassword}`,
      '--prefix',
      'orders/',
      'status',
      '--json',
    ]);
    expect(byFlags.code).toBe(0);
    expect(JSON.parse(byFlags.stdout).locks).toMatchObject([{ name: 'invoice:7', fencingToken: lock.fencingToken.toString() }]);

    const byEnv = await runCli(['status', '--json'], '', {
      ETCDCTL_ENDPOINTS: etcd.endpoint,
      ETCDCTL_CACERT: etcd.certs.ca,
      ETCDCTL_CERT: etcd.certs.clientCert,
      ETCDCTL_KEY: etcd.certs.clientKey,
      ETCDCTL_USER: 'orders-reader',
      ETCDCTL_PASSWORD: readerPassword,
      NESTJS_ETCD_LOCK_PREFIX: 'orders/',
    });
    expect(byEnv.code).toBe(0);
    expect(JSON.parse(byEnv.stdout).locks).toMatchObject([{ name: 'invoice:7' }]);

    // A reader may look but not release.
    const reader = ['--endpoints', etcd.endpoint, ...tlsFlags(), '--user', `orders-reader:${readerPassword}`, '--prefix', 'orders/'];
    const denied = await runCli([...reader, 'release', 'invoice:7', '--yes']);
    expect(denied.code).toBe(4);
    expect(denied.stderr).toContain('etcd denied the user permission');
    expect(lock.isHeld).toBe(true);

    const refused = await runCli(['--endpoints', etcd.endpoint, ...tlsFlags(), '--user', 'root:wrong', 'status']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`etcd at ${etcd.endpoint} refused the credentials`);
    expect(refused.stderr).not.toContain('wrong');

    const noPassword = await runCli(['--endpoints', etcd.endpoint, ...tlsFlags(), '--user', 'root', 'status']);
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toContain("--user 'root' needs a password");

    const missingFile = await runCli(['--endpoints', etcd.endpoint, '--cacert', '/nonexistent/ca.pem', 'status']);
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toContain("cannot read the --cacert file '/nonexistent/ca.pem'");
    await lock.release();
  });
});
