import { MAX_CONCURRENT_METADATA } from '../options/etcd-lock.constants.js';
import { assertLimit } from '../util/validation.js';
import { guardMethod, runnerOf } from './guarded-method.js';
import type { SingletonKey, SingletonOptions } from './singleton-options.interface.js';
import { assertHeldOptions } from './singleton.decorator.js';

/**
 * At most `limit` calls of the method run at a time across all replicas, each under a permit of the semaphore
 * `key` (a name, or a function of the call's arguments). When all permits are held the call is skipped and
 * returns `undefined`, unless `wait` or `onBusy: 'throw'`, as for `@Singleton`. The permit is released when the
 * method settles; the running method reads it with `LockService.current()`. Stacks with `@Cron` in either order.
 */
export function MaxConcurrent(key: SingletonKey, limit: number, options: SingletonOptions = {}): MethodDecorator {
  assertHeldOptions(key, options);
  assertLimit(limit, 'limit');
  return (target, propertyKey, descriptor) =>
    guardMethod(target, propertyKey, descriptor, '@MaxConcurrent', (original, label) => {
      const wrapper = async function (this: object, ...args: unknown[]) {
        const runner = runnerOf(this, label);
        const name = typeof key === 'function' ? (key as (...a: unknown[]) => unknown)(...args) : key;
        return runner.runWithPermit(name as string, limit, options, label, () => original.apply(this, args));
      };
      Reflect.defineMetadata(MAX_CONCURRENT_METADATA, { key, limit, options }, wrapper);
      return wrapper;
    }) as typeof descriptor;
}
