import { LEADER_ONLY_METADATA } from '../options/etcd-lock.constants.js';
import { assertName } from '../util/validation.js';
import { guardMethod, runnerOf } from './guarded-method.js';

/**
 * Runs the method only while this instance leads `election` (default: the module's `election` option). On a
 * follower the call returns `undefined` at once, with no etcd request. Stacks with `@Cron`, `@Interval` and
 * `@Timeout` in either order.
 */
export function LeaderOnly(election?: string): MethodDecorator {
  if (election !== undefined) assertName(election, 'election');
  return (target, propertyKey, descriptor) =>
    guardMethod(target, propertyKey, descriptor, '@LeaderOnly', (original, label) => {
      const wrapper = function (this: object, ...args: unknown[]) {
        const runner = runnerOf(this, label);
        return runner.runIfLeader(election, label, () => original.apply(this, args));
      };
      Reflect.defineMetadata(LEADER_ONLY_METADATA, { election }, wrapper);
      return wrapper;
    }) as typeof descriptor;
}
