import { EtcdLeaseInvalidError } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdUnavailableError, LeaderElectionService, LockLostError, LockService } from '../lib/index.js';
import { EtcdConnection } from '../lib/connection/etcd-connection.js';
import type { EtcdPort } from '../lib/etcd/etcd-port.js';
import { OrphanLeases } from '../lib/session/orphan-leases.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { useEtcd } from './harness/fixtures.js';
import { RecordingLogger } from './harness/logger.js';

const etcd = useEtcd();

/**
 * Makes the port's first `failures` revokes fail as a killed cluster member does (the try never reaches etcd);
 * returns how many revokes were sent.
 */
function failFirstRevokes(port: EtcdPort, failures: number): () => number {
  const revoke = port.leaseRevoke.bind(port);
  let sent = 0;
  port.leaseRevoke = (id) => {
    sent++;
    if (sent <= failures) return Promise.reject(new EtcdUnavailableError('connect ECONNREFUSED (a killed member)', port.endpoints));
    return revoke(id);
  };
  return () => sent;
}

describe('shutdown', () => {
  it('a clean stop: each lock still held ends with reason `shutdown` at LOG level, and a pending acquire rejects saying so', async () => {
    const logger = new RecordingLogger();
    // Nest's loggers are global to the process: the app that records is made last.
    const other = await etcd.app({ identity: 'b' });
    const app = await etcd.app({ identity: 'a' }, [], [], logger);
    const held = await other.get(LockService).acquire('busy');
    const lock = await app.get(LockService).acquire('kept');
    const pending = app
      .get(LockService)
      .acquire('busy')
      .catch((err: unknown) => err);
    await etcd.waitForKeys('lock/busy/', 2);
    await app.close();
    expect(lock.signal.reason).toMatchObject({ name: LockLostError.name, reason: 'shutdown' });
    const rejected = await pending;
    expect(rejected).toBeInstanceOf(LockLostError);
    expect((rejected as Error).message).toContain('shutting down');
    expect(logger.at('log')).toContain(`Lock 'kept' released by the shutdown's revoke, fencing token ${lock.fencingToken}`);
    expect(logger.at('warn')).toEqual([]);
    expect(logger.at('error')).toEqual([]);
    await held.release();
  });

  it('a revoke at shutdown that meets a dead member is sent again until etcd answers: no lease left to expire', async () => {
    const logger = new RecordingLogger();
    const app = await etcd.app({ identity: 'a', ttl: 30 }, [], [], logger);
    const lock = await app.get(LockService).acquire('kept');
    const sent = failFirstRevokes(app.get(EtcdConnection).port, 3);
    await app.close();
    // Three failed tries, then the one etcd answered (three tries in all left the lease to its TTL, in CI).
    expect(sent()).toBe(4);
    expect(lock.signal.reason).toMatchObject({ reason: 'shutdown' });
    expect(logger.at('warn')).toEqual([]);
    expect(logger.at('log').some((line) => /Session lease [0-9a-f]+ revoked/.test(line))).toBe(true);
    expect(await etcd.leftovers()).toEqual({ keys: [], leases: [] });
  });

  it('an orphan lease (a grant in doubt, a session given up on) is revoked at shutdown until etcd answers', async () => {
    const app = await etcd.app({ identity: 'a' });
    const port = app.get(EtcdConnection).port;
    const { ID } = await etcd.client.leaseClient.leaseGrant({ TTL: 60 });
    const sent = failFirstRevokes(port, 5);
    const orphans = new OrphanLeases(port);
    orphans.add(ID, 60_000, true);
    await orphans.revokeNow(performance.now() + 5000);
    expect(sent()).toBeGreaterThan(5);
    expect((await etcd.client.leaseClient.leaseLeases({})).leases.map((l) => l.ID)).not.toContain(ID);
  });

  it('with etcd frozen: close() ends by shutdownTimeout, grants no session, logs no error', async () => {
    const logger = new RecordingLogger();
    const shutdownTimeout = 1500;
    const app = await etcd.app({ identity: 'a', ttl: 10, requestTimeout: 1000, shutdownTimeout }, [], [], logger);
    await firstValueFrom(app.get(LeaderElectionService).changes().pipe(filter(Boolean)));
    const lock = await app.get(LockService).acquire('held');
    const port = app.get(EtcdConnection).port;
    const grant = port.leaseGrant.bind(port);
    let grants = 0;
    port.leaseGrant = (...args) => {
      grants++;
      return grant(...args);
    };
    etcd.server.pause();
    try {
      const started = performance.now();
      await app.close();
      // Without a bound it waited for the session to run out (the TTL, 10 s) and more.
      expect(performance.now() - started).toBeLessThan(shutdownTimeout + 500 + 1000);
    } finally {
      etcd.server.resume();
    }
    expect(grants).toBe(0);
    expect(await whenAborted(lock.signal)).toMatchObject({ reason: 'shutdown' });
    expect(logger.at('error')).toEqual([]);
    expect(logger.at('warn').some((line) => line.includes('did not answer the revoke'))).toBe(true);
    await expect(app.get(LeaderElectionService).campaign()).rejects.toThrow(EtcdUnavailableError);
    // The revoke sent while etcd was frozen may be applied now that it runs again, or not (then the lease is left
    // to its TTL): the test revokes what is left; one already gone is fine.
    const { leases } = await etcd.client.leaseClient.leaseLeases({});
    for (const lease of leases) {
      await etcd.client.leaseClient.leaseRevoke({ ID: lease.ID }).catch((err: unknown) => {
        if (!(err instanceof EtcdLeaseInvalidError)) throw err;
      });
    }
  });
});
