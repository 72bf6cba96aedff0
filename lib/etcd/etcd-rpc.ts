import {
  ClientClosedError,
  type Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCGenericError,
  GRPCUnauthenticatedError,
  type IDeleteRangeRequest,
  type IRangeRequest,
  type IRangeResponse,
  type ITxnRequest,
  type ITxnResponse,
  isRecoverableError,
} from 'etcd3';
import { isBrokenCircuitError } from 'cockatiel';
import { EtcdAccessDeniedError, EtcdLockError, EtcdRequestError, EtcdUnavailableError } from '../errors.js';
import type { EtcdPort, KeepAliveStream, LeaseTimeToLive, PortWatcher, WatchRequest, WatchSink } from './etcd-port.js';
import { WatchStream } from './watch-stream.js';
import { messageOf } from '../util/error-message.js';

type CallOptions = NonNullable<Parameters<Etcd3['kv']['range']>[1]>;

/** How many times a read is sent at most: once per host of a 3-member cluster. */
const READ_ATTEMPTS = 3;

/**
 * The port to etcd over an etcd3 client: each request with its own deadline (a paused or partitioned etcd member
 * accepts TCP but never answers, and a call without a deadline would hang forever); errors become our typed
 * errors. Keepalives are multiplexed by etcd3 on one stream, watches by our `WatchStream` on another.
 */
export class EtcdRpc implements EtcdPort {
  private readonly watches: WatchStream;

  constructor(
    private readonly client: Etcd3,
    readonly endpoints: readonly string[],
    private readonly timeoutMs: number,
  ) {
    this.watches = new WatchStream(() => client.watchClient.watch());
  }

  options(timeoutMs = this.timeoutMs): CallOptions & { deadline: number } {
    return { deadline: Date.now() + timeoutMs };
  }

  /**
   * A read, sent again (to the next host etcd3 picks) when an attempt fails with a recoverable error before the
   * deadline: a read changes nothing, so repeating it is safe, unlike a write (the client does not retry those).
   */
  range(req: IRangeRequest, what: string): Promise<IRangeResponse> {
    const options = this.options();
    return this.call(what, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.client.kv.range(req, options);
        } catch (err) {
          if (attempt >= READ_ATTEMPTS || !isRecoverableError(err as Error) || Date.now() >= options.deadline) throw err;
        }
      }
    });
  }

  txn(req: ITxnRequest, what: string, timeoutMs?: number): Promise<ITxnResponse> {
    return this.call(what, () => this.client.kv.txn(req, this.options(timeoutMs)));
  }

  deleteRange(req: IDeleteRangeRequest, what: string) {
    return this.call(what, () => this.client.kv.deleteRange(req, this.options()));
  }

  leaseGrant(id: string, ttl: number, timeoutMs: number) {
    return this.call('grant a session lease', () => this.client.leaseClient.leaseGrant({ TTL: ttl, ID: id }, this.options(timeoutMs)));
  }

  /** Revokes a lease; a lease that is already gone counts as revoked. */
  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call('revoke the session lease', () => this.client.leaseClient.leaseRevoke({ ID: id }, this.options()));
    } catch (err) {
      if (!isLeaseGone(err)) throw err;
    }
  }

  async leaseTimeToLive(id: string): Promise<LeaseTimeToLive | undefined> {
    const res = await this.call('read a lease', () => this.client.leaseClient.leaseTimeToLive({ ID: id }, this.options()));
    // etcd answers TTL -1 for a lease that does not exist (expired or revoked).
    return Number(res.TTL) < 0 ? undefined : { ttl: Number(res.TTL), grantedTtl: Number(res.grantedTTL) };
  }

  keepAlive(): Promise<KeepAliveStream> {
    return this.client.leaseClient.leaseKeepAlive() as Promise<KeepAliveStream>;
  }

  /** On our own multiplexed stream, not etcd3's watch manager (which creates watches one round trip at a time). */
  watch(req: WatchRequest, sink: WatchSink): PortWatcher {
    return this.watches.watch(req, sink);
  }

  close(): void {
    this.watches.close();
    this.client.close();
  }

  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateError(err, what, this.endpoints);
    }
  }
}

/**
 * @internal Maps an etcd3 error (from etcd3, or from the in-memory etcd, which throws the same classes) to ours.
 * Only the cause's message is kept: etcd3 never puts credentials in it.
 */
export function translateError(err: unknown, what: string, endpoints: readonly string[]): EtcdLockError {
  if (err instanceof EtcdLockError) return err;
  const detail = messageOf(err);
  if (isTransportError(err)) {
    return new EtcdUnavailableError(`etcd did not answer when trying to ${what}: ${detail}`, endpoints, {
      cause: err,
    });
  }
  if (isAuthenticationError(err)) {
    return new EtcdAccessDeniedError(
      'authentication-failed',
      `etcd refused the credentials of the 'etcd.auth' option when trying to ${what}: ${detail}`,
      { cause: err },
    );
  }
  if (err instanceof EtcdPermissionDeniedError) {
    return new EtcdAccessDeniedError(
      'permission-denied',
      `etcd denied the user permission to ${what}: its role needs readwrite on the keys under the library's ` +
        `prefix (see docs/security.md): ${detail}`,
      { cause: err },
    );
  }
  return new EtcdRequestError(`etcd refused to ${what}: ${detail}`, { cause: err });
}

/** @internal True for the error etcd answers the revoke of a lease that does not exist (anymore). */
export function isLeaseGone(err: unknown): boolean {
  return err instanceof EtcdRequestError && err.cause instanceof EtcdLeaseInvalidError;
}

/** Errors that mean "no answer" rather than "etcd said no". */
export function isTransportError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof ClientClosedError || err instanceof GRPCDeadlineExceededError) return true;
  if (err instanceof GRPCCancelledError) return true;
  if (isRecoverableError(err) || isBrokenCircuitError(err)) return true;
  // Errors from grpc-js itself (no etcd code) before etcd3 casts them.
  return !(err instanceof GRPCGenericError) && !err.constructor.name.startsWith('Etcd') && 'code' in err;
}

function isAuthenticationError(err: unknown): boolean {
  return (
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdInvalidAuthTokenError ||
    err instanceof GRPCUnauthenticatedError ||
    // Auth is enabled on etcd and the client sent no credentials.
    (err instanceof Error && err.message.includes('etcdserver: user name is empty'))
  );
}
