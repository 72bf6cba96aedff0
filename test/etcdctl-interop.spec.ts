import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { LockService, LockTimeoutError } from '../lib/index.js';
import { ETCDCTL_BIN } from './harness/etcd.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

/** `etcdctl lock <name>`: prints its key once it holds the lock, and releases on SIGINT. */
class EtcdctlLock {
  readonly child: ChildProcess;
  readonly key: Promise<string>;

  constructor(name: string) {
    this.child = spawn(ETCDCTL_BIN, ['--endpoints', etcd.endpoint, 'lock', name], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.key = new Promise((resolve, reject) => {
      let out = '';
      this.child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const line = out.split('\n')[0];
        if (out.includes('\n')) resolve(line);
      });
      this.child.once('exit', (code) => reject(new Error(`etcdctl lock exited (${code}) before holding`)));
    });
  }

  /** Releases (SIGINT), waits for exit, and revokes etcdctl's session lease, which etcdctl leaves to expire. */
  async stop(): Promise<void> {
    const key = await this.key;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGINT');
    await exited;
    const lease = BigInt(`0x${key.split('/').pop()}`).toString();
    await etcd.client.leaseClient.leaseRevoke({ ID: lease }).catch(() => undefined);
  }
}

describe('interoperability with etcdctl lock', () => {
  it('a lock held by `etcdctl lock lock/<name>` excludes acquire', async () => {
    const app = await etcd.app();
    const locks = app.get(LockService);
    const etcdctl = new EtcdctlLock('lock/orders');
    const key = await etcdctl.key;
    expect(key).toMatch(/^lock\/orders\/[0-9a-f]+$/);
    expect(await locks.tryAcquire('orders')).toBeNull();
    await expect(locks.acquire('orders', { timeout: 200 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect((await locks.holder('orders'))?.key).toBe(key);
    const waiting = locks.acquire('orders');
    await etcdctl.stop();
    const lock = await waiting;
    expect(lock.fencingToken).toBeGreaterThan(0n);
    await lock.release();
  });

  it('a lock held by acquire excludes `etcdctl lock`, which gets it on release', async () => {
    const app = await etcd.app();
    const locks = app.get(LockService);
    const lock = await locks.acquire('orders');
    const etcdctl = new EtcdctlLock('lock/orders');
    let etcdctlHeld = false;
    void etcdctl.key.then(
      () => (etcdctlHeld = true),
      () => undefined,
    );
    // etcdctl has queued behind us (its key exists) but does not hold the lock.
    const queued = await etcd.client.watch().prefix('lock/orders/').create();
    while ((await etcd.client.getAll().prefix('lock/orders/').keys()).length < 2) await once(queued, 'put');
    await queued.cancel();
    expect(etcdctlHeld).toBe(false);
    expect((await locks.holder('orders'))?.key).toBe(lock.key);
    await lock.release();
    const key = await etcdctl.key;
    expect((await locks.holder('orders'))?.key).toBe(key);
    await etcdctl.stop();
  });

  it('`etcdctl lock lock/a/b` is another lock than ours named `a`: it neither holds nor blocks `a`', async () => {
    const app = await etcd.app();
    const locks = app.get(LockService);
    const etcdctl = new EtcdctlLock('lock/a/b');
    expect(await etcdctl.key).toMatch(/^lock\/a\/b\/[0-9a-f]+$/);
    expect(await locks.holder('a')).toBeNull();
    const lock = await locks.tryAcquire('a');
    expect(lock).not.toBeNull();
    expect((await locks.holder('a'))?.key).toBe(lock?.key);
    await lock?.release();
    const waited = await locks.acquire('a', { timeout: 2000 });
    await waited.release();
    await etcdctl.stop();
  });

  it("another app's locks under a longer prefix are not ours: prefix '' does not see `lock/lock/x` as lock `lock`", async () => {
    const ours = (await etcd.app({ identity: 'ours' })).get(LockService);
    const theirs = (await etcd.app({ identity: 'theirs', prefix: 'lock' })).get(LockService);
    const held = await theirs.acquire('x');
    expect(held.key).toMatch(/^lock\/lock\/x\/[0-9a-f]+$/);
    expect(await ours.holder('lock')).toBeNull();
    const mine = await ours.tryAcquire('lock');
    expect(mine?.value).toBe('ours');
    await Promise.all([mine?.release(), held.release()]);
  });
});
