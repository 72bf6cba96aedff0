// A replica with a per-second cron job, as an OS process whose clock can be skewed.
// argv: <endpoints, comma-separated> <identity> <clockOffsetMs> <mode: leader|singleton> <ttl> [minHoldMs]
// Prints JSON lines: {event:'leader', leader} on each leadership change, {event:'run', start, end, token} per run,
// {event:'session-lost', at} when its session is lost
// (times from performance.timeOrigin, i.e. the real clock, not the skewed one). "stop" on stdin closes the app.
const [endpoint, identity, offset, mode, ttl, minHoldMs] = process.argv.slice(2);

// Skew this process's wall clock before the scheduler loads: cron reads Date.
const RealDate = Date;
const skew = Number(offset);
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + skew);
    else super(...args);
  }
  static now() {
    return RealDate.now() + skew;
  }
}
globalThis.Date = SkewedDate;

await import('reflect-metadata');
const { Injectable, Module } = await import('@nestjs/common');
const { NestFactory } = await import('@nestjs/core');
const { Cron, ScheduleModule } = await import('@nestjs/schedule');
const { EtcdLockEventName, EtcdLockEvents, EtcdLockModule, LeaderElectionService, LeaderOnly, LockService, Singleton } = await import(
  '../../dist/index.js'
);

const now = () => performance.timeOrigin + performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify({ identity, ...line })}\n`);

class Jobs {
  async tick() {
    const start = now();
    const token = LockService.current()?.fencingToken?.toString();
    await new Promise((resolve) => setTimeout(resolve, 50));
    print({ event: 'run', start, end: now(), token });
  }
}
const guard = mode === 'leader' ? LeaderOnly() : Singleton('tick', minHoldMs ? { minHoldMs: Number(minHoldMs) } : {});
// As `@Cron(...) @LeaderOnly()` (or `@Singleton`) would in TypeScript: applied bottom-up.
Object.defineProperty(
  Jobs.prototype,
  'tick',
  Reflect.decorate([Cron('* * * * * *'), guard], Jobs.prototype, 'tick', Object.getOwnPropertyDescriptor(Jobs.prototype, 'tick')),
);
Injectable()(Jobs);

class WorkerModule {}
Module({
  imports: [ScheduleModule.forRoot(), EtcdLockModule.forRoot({ hosts: endpoint.split(','), identity, ttl: Number(ttl) })],
  providers: [Jobs],
})(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
app
  .get(LeaderElectionService)
  .changes()
  .subscribe((leader) => print({ event: 'leader', leader, at: now() }));
// A session lost by its local deadline (a CPU-starved process misses its keepalives): told, so that a test can
// tell a slow failover caused by it from one of ours.
app
  .get(EtcdLockEvents)
  .events$.subscribe((e) => e.type === EtcdLockEventName.SessionLost && print({ event: 'session-lost', at: now(), reason: e.reason }));
print({ event: 'ready' });
process.stdin.on('data', async (data) => {
  if (data.toString().includes('stop')) {
    process.stdin.destroy();
    await app.close();
  }
});
