// One OS process running sections under a semaphore permit (limit 2): on entering, it increments a counter of
// holders inside, kept in etcd through the permit's fenced transactions (compare-and-swap); it does its section's
// work once (a key that must not exist yet); on leaving it decrements the counter.
// argv: <endpoint> <sections> <identity>. Prints "ready", waits for "go", prints one JSON line per section.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, SemaphoreService } from '../../dist/index.js';

const [endpoint, sections, identity] = process.argv.slice(2);

class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: endpoint, identity, ttl: 5 })] })(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const semaphores = app.get(SemaphoreService);
const client = new Etcd3({ hosts: endpoint });

/** Adds `delta` to the counter (the test creates it at '0') through the permit's fence; returns the new value. */
async function add(permit, delta) {
  for (;;) {
    const current = await client.get('sem/inside').string();
    const next = String(Number(current) + delta);
    const res = await permit.fencedTxn().if('sem/inside', 'Value', '==', current).put('sem/inside', next).commit();
    if (res.succeeded) return Number(next);
  }
}

process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy();

for (let i = 0; i < Number(sections); i++) {
  await semaphores.withPermit(
    'partner-api',
    async (permit) => {
      const inside = await add(permit, 1);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
      const done = `sem/done/${identity}-${i}`;
      const work = await permit.fencedTxn().if(done, 'Version', '==', 0).put(done, permit.fencingToken.toString()).commit();
      await add(permit, -1);
      process.stdout.write(`${JSON.stringify({ inside, applied: work.succeeded, token: permit.fencingToken.toString() })}\n`);
    },
    { limit: 2 },
  );
}
client.close();
await app.close();
