import { assertMaxHold } from '../locks/hold-path.js';
import { SINGLETON_METADATA } from '../options/etcd-lock.constants.js';
import { InvalidArgumentError } from '../errors.js';
import type { SingletonKey, SingletonOptions } from './singleton-options.interface.js';
import { assertDuration, assertName, assertOptions } from '../util/validation.js';
import { guardMethod, runnerOf } from './guarded-method.js';

/**
 * At most one call of the method runs at a time, across all replicas and within one, under the lock `key` (a
 * name, or a function of the call's arguments: `(id) => 'order:' + id`). When busy the call is skipped and
 * returns `undefined`, unless `wait` or `onBusy: 'throw'`. The lock is released when the method settles; the
 * running method reads it with `LockService.current()`. The decorated method always returns a Promise.
 */
export function Singleton(key: SingletonKey, options: SingletonOptions = {}): MethodDecorator {
  assertHeldOptions(key, options);
  return (target, propertyKey, descriptor) =>
    guardMethod(target, propertyKey, descriptor, '@Singleton', (original, label) => {
      const wrapper = async function (this: object, ...args: unknown[]) {
        const runner = runnerOf(this, label);
        const name = typeof key === 'function' ? (key as (...a: unknown[]) => unknown)(...args) : key;
        return runner.runSingleton(name as string, options, label, () => original.apply(this, args));
      };
      Reflect.defineMetadata(SINGLETON_METADATA, { key, options }, wrapper);
      return wrapper;
    }) as typeof descriptor;
}

/** @internal The checks `@Singleton` and `@MaxConcurrent` make of their key and options, at decoration time. */
export function assertHeldOptions(key: SingletonKey, options: SingletonOptions): void {
  if (typeof key !== 'function') assertName(key, 'key');
  assertOptions(options, 'options', ['wait', 'timeout', 'onBusy', 'minHoldMs', 'maxHoldMs']);
  if (options.timeout !== undefined) assertDuration(options.timeout, 'options.timeout');
  if (options.minHoldMs !== undefined) assertDuration(options.minHoldMs, 'options.minHoldMs');
  assertMaxHold(options.maxHoldMs);
  if (options.wait !== undefined && typeof options.wait !== 'boolean') {
    throw new InvalidArgumentError('options.wait', 'must be a boolean');
  }
  if (options.onBusy !== undefined && options.onBusy !== 'skip' && options.onBusy !== 'throw') {
    throw new InvalidArgumentError('options.onBusy', "must be 'skip' or 'throw'");
  }
}
