import { ON_LEADERSHIP_METADATA } from '../options/etcd-lock.constants.js';
import { EtcdLockError } from '../errors.js';
import { assertName } from '../util/validation.js';

/** What `@OnLeadership` stores on a method. */
export interface OnLeadershipMetadata {
  readonly election: string | undefined;
}

/**
 * Work held while this instance leads `election` (default: the module's `election` option): Nest calls the
 * method with the `Leadership` each time a term begins, and the method's work ends on `leadership.signal` (a feed
 * connection, a queue consumer, a cache warmer). If the method throws or rejects while the term lasts, the error
 * is logged and this instance resigns and campaigns again after a backoff, so a broken leader does not keep the
 * election. At shutdown the signal aborts first, then the instance resigns once the method's promise settles.
 */
export function OnLeadership(election?: string): MethodDecorator {
  if (election !== undefined) assertName(election, 'election');
  return (target, propertyKey, descriptor) => {
    const label = `${target.constructor?.name ?? 'object'}.${String(propertyKey)}`;
    if (typeof descriptor?.value !== 'function') {
      throw new EtcdLockError(`@OnLeadership can only decorate a method (on ${label})`);
    }
    Reflect.defineMetadata(ON_LEADERSHIP_METADATA, { election } satisfies OnLeadershipMetadata, descriptor.value);
    return descriptor;
  };
}
