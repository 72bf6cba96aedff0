import type { EtcdPort } from '../etcd/etcd-port.js';
import type { Telemetry } from './telemetry.js';

/**
 * The port to etcd with each unary request timed into `etcd_lock.etcd.request.duration` (by kind and outcome).
 * Watches and keepalives are streams: not requests to time.
 */
export function instrumentedPort(port: EtcdPort, telemetry: Telemetry): EtcdPort {
  const timed = <T>(kind: string, call: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    return call().then(
      (res) => {
        telemetry.request(kind, 'ok', start);
        return res;
      },
      (err: unknown) => {
        telemetry.request(kind, telemetry.outcomeOf(err), start);
        throw err;
      },
    );
  };
  return {
    get endpoints() {
      return port.endpoints;
    },
    freeWatches: port.freeWatches,
    range: (req, what) => timed('range', () => port.range(req, what)),
    txn: (req, what, timeoutMs) => timed('txn', () => port.txn(req, what, timeoutMs)),
    deleteRange: (req, what) => timed('delete_range', () => port.deleteRange(req, what)),
    leaseGrant: (id, ttl, timeoutMs) => timed('lease_grant', () => port.leaseGrant(id, ttl, timeoutMs)),
    leaseRevoke: (id) => timed('lease_revoke', () => port.leaseRevoke(id)),
    leaseTimeToLive: (id) => timed('lease_time_to_live', () => port.leaseTimeToLive(id)),
    keepAlive: () => port.keepAlive(),
    watch: (req, sink) => port.watch(req, sink),
    close: () => port.close(),
  };
}
