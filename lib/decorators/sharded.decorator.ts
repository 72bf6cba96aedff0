import { SHARDED_METADATA } from '../options/etcd-lock.constants.js';
import type { ShardGroupOptions } from '../sharding/sharding.service.js';
import { assertDuration, assertName, assertOptions, assertShardCount } from '../util/validation.js';
import { guardMethod, runnerOf } from './guarded-method.js';

/** Options of `@Sharded`. */
export interface ShardedOptions extends ShardGroupOptions {
  /**
   * A shard a run used is not handed over until this many ms after that run started (ShedLock's
   * `lockAtLeastFor`): with a cron, the next owner cannot run the same shard again in the same tick. Default 0.
   */
  minHoldMs?: number;
}

/**
 * Runs the method on every instance that owns at least one shard of `group` now, with those shards as
 * `ShardingService.current()`; elsewhere the call returns `undefined` at once, with no etcd request. Every member
 * joins the group at bootstrap. Stacks with `@Cron`, `@Interval` and `@Timeout` in either order.
 */
export function Sharded(group: string, options: ShardedOptions): MethodDecorator {
  assertName(group, 'group');
  assertOptions(options, 'options', ['shards', 'rebalanceDelayMs', 'minHoldMs']);
  assertShardCount(options?.shards, 'options.shards');
  if (options.rebalanceDelayMs !== undefined) assertDuration(options.rebalanceDelayMs, 'options.rebalanceDelayMs');
  if (options.minHoldMs !== undefined) assertDuration(options.minHoldMs, 'options.minHoldMs');
  const minHoldMs = options.minHoldMs ?? 0;
  return (target, propertyKey, descriptor) =>
    guardMethod(target, propertyKey, descriptor, '@Sharded', (original, label) => {
      const wrapper = function (this: object, ...args: unknown[]) {
        const runner = runnerOf(this, label);
        return runner.runIfSharded(group, minHoldMs, label, () => original.apply(this, args));
      };
      Reflect.defineMetadata(SHARDED_METADATA, { group, options }, wrapper);
      return wrapper;
    }) as typeof descriptor;
}
