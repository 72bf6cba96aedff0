import { Inject } from '@nestjs/common';
import { RUNNER_TOKEN } from '../options/etcd-lock.constants.js';
import { EtcdLockError } from '../errors.js';
import type { GuardedRunner } from './guarded-runner.js';

const RUNNER_PROPERTY = Symbol('etcdLockRunner');
const runners = new WeakMap<object, GuardedRunner>();
const injected = new WeakSet<object>();

/**
 * Replaces a method with `wrapper`, keeping every piece of Reflect metadata of the original (so `@Cron`,
 * `@Interval`, `@Timeout` and any other method decorator work whichever order they are applied in), and asks
 * Nest to hand the instance our runner: if `EtcdLockModule` is not imported, Nest refuses to start and names it.
 */
export function guardMethod(
  target: object,
  propertyKey: string | symbol,
  descriptor: PropertyDescriptor,
  decorator: string,
  wrap: (original: (...args: unknown[]) => unknown, label: string) => (this: object, ...args: unknown[]) => unknown,
): PropertyDescriptor {
  const original = descriptor.value;
  const label = `${target.constructor.name}.${String(propertyKey)}`;
  if (typeof original !== 'function') throw new EtcdLockError(`${decorator} can only decorate a method (on ${label})`);
  const wrapper = wrap(original, label);
  for (const key of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), wrapper);
  }
  Object.defineProperty(wrapper, 'name', { value: original.name });
  if (!injected.has(target)) {
    injected.add(target);
    Inject(RUNNER_TOKEN)(target, RUNNER_PROPERTY);
  }
  descriptor.value = wrapper;
  return descriptor;
}

/** The runner of the app this instance belongs to. */
export function runnerOf(instance: object, label: string): GuardedRunner {
  const runner = runners.get(instance) ?? (instance as Record<symbol, GuardedRunner | undefined>)[RUNNER_PROPERTY];
  if (!runner) {
    throw new EtcdLockError(
      `${label} is guarded by @LeaderOnly/@Singleton but was called on an instance Nest did not create with ` +
        'EtcdLockModule imported; the method did not run',
    );
  }
  return runner;
}

/**
 * Moves the runner Nest injected into a module-private map and deletes the property, so nothing of ours stays
 * on the user's instance. (Request-scoped instances, created later, keep the property.)
 */
export function bindRunner(instance: object): void {
  const holder = instance as Record<symbol, GuardedRunner | undefined>;
  const runner = holder[RUNNER_PROPERTY];
  if (!runner) return;
  runners.set(instance, runner);
  delete holder[RUNNER_PROPERTY];
}
