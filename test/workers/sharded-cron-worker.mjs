// A replica with a per-second `@Cron` guarded by `@Sharded('tenants', { shards, minHoldMs })`, as an OS process.
// argv: <endpoints, comma-separated> <identity> <ttl> <shards> <minHoldMs>
// Prints JSON lines: {event:'owned', shards, at} on each change of its shards, {event:'run', start, end, shards:
// [{index, token}]} per run (real-clock ms). Each run writes, per shard, `runs/<shard>/<second>/<identity>`
// through the shard's fenced transaction. "stop" on stdin closes the app.
const [endpoint, identity, ttl, shards, minHoldMs] = process.argv.slice(2);

await import('reflect-metadata');
const { Injectable, Module } = await import('@nestjs/common');
const { NestFactory } = await import('@nestjs/core');
const { Cron, ScheduleModule } = await import('@nestjs/schedule');
const { EtcdLockModule, Sharded, ShardingService } = await import('../../dist/index.js');

const now = () => performance.timeOrigin + performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify({ identity, ...line })}\n`);

class Jobs {
  async tick() {
    const start = now();
    const second = Math.floor(start / 1000);
    const set = ShardingService.current();
    const done = [];
    for (const shard of set.shards) {
      try {
        await shard.fencedTxn().put(`runs/${shard.index}/${second}/${identity}`, String(shard.fencingToken)).commit();
        done.push({ index: shard.index, token: String(shard.fencingToken) });
      } catch {
        // Lost meanwhile: not done here.
      }
    }
    print({ event: 'run', start, end: now(), shards: done });
  }
}
const guard = Sharded('tenants', { shards: Number(shards), minHoldMs: Number(minHoldMs) });
// As `@Cron(...) @Sharded(...)` would in TypeScript: applied bottom-up.
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
  .get(ShardingService)
  .owned('tenants')
  .subscribe((list) => print({ event: 'owned', shards: list, at: now() }));
print({ event: 'ready' });
process.stdin.on('data', async (data) => {
  if (data.toString().includes('stop')) {
    process.stdin.destroy();
    await app.close();
  }
});
