import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { Etcd3, type IOptions, isRecoverableError } from 'etcd3';

/**
 * etcd3's defaults suit a cache, not a lock: its per-host circuit breaker refuses every call for 5 s after 3
 * failures (after a short outage, or with one endpoint, that delays recovery and fails the revoke at shutdown).
 * Ours retries a host after 500 ms. (Only for clients we create; `client` or `etcd.faultHandling` given by the app
 * win.) Watches do not use etcd3's watch manager: our own stream (`watch-stream.ts`) reconnects within 1 s.
 */
const GENTLE_FAULT_HANDLING = {
  host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
  /**
   * No blind retries: etcd3's default sends a call that failed with a recoverable error (a connection reset, a
   * member killed mid-request) again, to another host. A transaction whose first attempt etcd applied anyway is
   * then applied twice, and a fenced write of an old value can land after a newer one (the fault suite's stalls
   * found it). Every write of ours is retried, or not, by the code that knows whether it is safe to repeat; reads
   * are retried by the port (`EtcdRpc.range`).
   */
  global: noop,
};

/**
 * grpc-js reconnects a failed channel with a backoff growing from 1 s to 120 s, and etcd3 resets channels only
 * after failed unary calls, not after a broken keepalive stream. After etcd came back, our keepalives kept
 * meeting a stale "connection refused" for seconds, until the session deadline passed (seen in fault
 * scenario 9). Reconnect within 1 s instead.
 */
const RECONNECT_BACKOFF = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 };

/**
 * An etcd3 client made the library's way (the module's, and the CLI's): no blind retries, a gentle per-host
 * breaker, fast reconnects. `options` (the module's `etcd` option, the CLI's auth and TLS) win over these.
 */
export function createEtcdClient(hosts: readonly string[], options: Omit<IOptions, 'hosts'> = {}): Etcd3 {
  return new Etcd3({
    faultHandling: GENTLE_FAULT_HANDLING,
    ...options,
    grpcOptions: { ...RECONNECT_BACKOFF, ...options.grpcOptions },
    hosts: [...hosts],
  });
}
