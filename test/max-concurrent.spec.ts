import { Injectable } from '@nestjs/common';
import { Cron, ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { InvalidArgumentError, LockBusyError, MaxConcurrent, SemaphoreService } from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

/** Calls that stay inside until `open()`; `entered` resolves as each one starts. */
@Injectable()
class Exports {
  readonly tokens: bigint[] = [];
  private gates: Array<() => void> = [];
  private arrivals: Array<() => void> = [];

  @MaxConcurrent('exports', 2)
  async run(): Promise<string> {
    return this.inside();
  }

  @MaxConcurrent((tenant: string) => `export:${tenant}`, 1, { onBusy: 'throw' })
  async perTenant(_tenant: string): Promise<string> {
    return this.inside();
  }

  @MaxConcurrent('exports', 2, { wait: true })
  async queued(): Promise<string> {
    return this.inside();
  }

  // Both orders with @Cron: the scheduler registers each, and the cron calls go through the permit.
  @Cron('0 0 1 1 *', { name: 'cron-above' })
  @MaxConcurrent('nightly', 1)
  nightlyAbove(): string {
    return 'ran';
  }

  @MaxConcurrent('nightly', 1)
  @Cron('0 0 1 1 *', { name: 'cron-below' })
  nightlyBelow(): string {
    return 'ran';
  }

  entered(): Promise<void> {
    return new Promise((resolve) => this.arrivals.push(resolve));
  }

  open(): void {
    for (const release of this.gates.splice(0)) release();
  }

  private async inside(): Promise<string> {
    this.tokens.push(SemaphoreService.current()?.fencingToken ?? -1n);
    for (const arrived of this.arrivals.splice(0)) arrived();
    await new Promise<void>((resolve) => this.gates.push(resolve));
    return 'done';
  }
}

const replica = (identity: string) => etcd.app({ identity }, [ScheduleModule.forRoot()], [Exports]);

describe('@MaxConcurrent', () => {
  it('runs at most `limit` calls at once across replicas; others skip, wait, or throw as asked', async () => {
    const [a, b] = [await replica('a'), await replica('b')];
    const [ea, eb] = [a.get(Exports), b.get(Exports)];
    // Each `entered()` is asked for before the call that will enter, so no arrival is missed.
    let inA = ea.entered();
    const first = ea.run();
    await inA;
    let inB = eb.entered();
    const second = eb.run();
    await inB;
    expect(await a.get(SemaphoreService).holders('exports')).toHaveLength(2);
    // Full: a third call is skipped at once, without running.
    expect(await ea.run()).toBeUndefined();
    // With wait: it runs once a permit is free, with a greater token.
    inB = eb.entered();
    const third = eb.queued();
    ea.open();
    expect(await first).toBe('done');
    await inB;
    expect(eb.tokens.at(-1)).toBeGreaterThan(ea.tokens[0]);
    eb.open();
    expect(await Promise.all([second, third])).toEqual(['done', 'done']);
    expect(ea.tokens).toHaveLength(1);

    // A key from the arguments; onBusy: 'throw'.
    inA = ea.entered();
    const tenant = ea.perTenant('acme');
    await inA;
    await expect(eb.perTenant('acme')).rejects.toThrow(LockBusyError);
    inB = eb.entered();
    const other = eb.perTenant('globex');
    await inB;
    ea.open();
    eb.open();
    expect(await Promise.all([tenant, other])).toEqual(['done', 'done']);
    expect(await a.get(SemaphoreService).holders('exports')).toEqual([]);
  });

  it('stacks with @Cron in either order, and refuses a bad limit when decorating', async () => {
    const app = await replica('c');
    expect([...app.get(SchedulerRegistry).getCronJobs().keys()].sort()).toEqual(['cron-above', 'cron-below']);
    expect(await app.get(Exports).nightlyAbove()).toBe('ran');
    expect(await app.get(Exports).nightlyBelow()).toBe('ran');
    for (const limit of [0, 2.5, 10_001]) expect(() => MaxConcurrent('x', limit)).toThrow(InvalidArgumentError);
    expect(() => MaxConcurrent('a/b', 1)).toThrow(InvalidArgumentError);
  });
});
