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

type CallOptions = NonNullable<Parameters<Etcd3['kv']['range']>[1]>;

/**
 * The etcd requests the library makes, each with its own deadline: a paused or partitioned etcd member accepts
 * TCP but never answers, and a call without a deadline would hang forever. Errors become our typed errors.
 */
export class EtcdRpc {
  constructor(
    readonly client: Etcd3,
    readonly endpoints: readonly string[],
    private readonly timeoutMs: number,
  ) {}

  options(timeoutMs = this.timeoutMs): CallOptions {
    return { deadline: Date.now() + timeoutMs };
  }

  range(req: IRangeRequest, what: string): Promise<IRangeResponse> {
    return this.call(what, () => this.client.kv.range(req, this.options()));
  }

  txn(req: ITxnRequest, what: string, timeoutMs?: number): Promise<ITxnResponse> {
    return this.call(what, () => this.client.kv.txn(req, this.options(timeoutMs)));
  }

  deleteRange(req: IDeleteRangeRequest, what: string) {
    return this.call(what, () => this.client.kv.deleteRange(req, this.options()));
  }

  leaseGrant(id: string, ttl: number, timeoutMs: number) {
    return this.call('grant a session lease', () =>
      this.client.leaseClient.leaseGrant({ TTL: ttl, ID: id }, this.options(timeoutMs)),
    );
  }

  /** Revokes a lease; a lease that is already gone counts as revoked. */
  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call('revoke the session lease', () => this.client.leaseClient.leaseRevoke({ ID: id }, this.options()));
    } catch (err) {
      if (!(err instanceof EtcdRequestError && err.cause instanceof EtcdLeaseInvalidError)) throw err;
    }
  }

  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.translate(err, what);
    }
  }

  /** Maps a client error to ours. Only the cause's message is kept: etcd3 never puts credentials in it. */
  translate(err: unknown, what: string): EtcdLockError {
    if (err instanceof EtcdLockError) return err;
    const detail = err instanceof Error ? err.message : String(err);
    if (isTransportError(err)) {
      return new EtcdUnavailableError(`etcd did not answer when trying to ${what}: ${detail}`, this.endpoints, {
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
          `prefix (see "Secure etcd" in the README): ${detail}`,
        { cause: err },
      );
    }
    return new EtcdRequestError(`etcd refused to ${what}: ${detail}`, { cause: err });
  }
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
