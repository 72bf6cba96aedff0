// One OS process running sections under a read/write lock: 3 reads to 1 write. Inside, it counts the readers and
// writers inside in etcd, through the lock's fenced transactions (compare-and-swap on both counters), and reports
// what it saw on entering. argv: <endpoint> <sections> <identity>. Prints "ready", waits for "go".
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, ReadWriteLockService } from '../../dist/index.js';

const [endpoint, sections, identity] = process.argv.slice(2);

class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: endpoint, identity, ttl: 5 })] })(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const rw = app.get(ReadWriteLockService);
const client = new Etcd3({ hosts: endpoint });

/** Adds `delta` to the counter of `mode`s inside; returns both counters as they were after the change. */
async function enter(lock, mode, delta) {
  for (;;) {
    const [readers, writers] = await Promise.all([client.get('rw/readers').string(), client.get('rw/writers').string()]);
    const key = mode === 'read' ? 'rw/readers' : 'rw/writers';
    const current = mode === 'read' ? readers : writers;
    const res = await lock
      .fencedTxn()
      .if('rw/readers', 'Value', '==', readers)
      .if('rw/writers', 'Value', '==', writers)
      .put(key, String(Number(current) + delta))
      .commit();
    if (res.succeeded) {
      return mode === 'read'
        ? { readers: Number(readers) + delta, writers: Number(writers) }
        : { readers: Number(readers), writers: Number(writers) + delta };
    }
  }
}

process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy();

for (let i = 0; i < Number(sections); i++) {
  const mode = i % 4 === 3 ? 'write' : 'read';
  const lock = mode === 'read' ? await rw.acquireRead('shared') : await rw.acquireWrite('shared');
  const seen = await enter(lock, mode, 1);
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 6));
  await enter(lock, mode, -1);
  await lock.release();
  process.stdout.write(`${JSON.stringify({ mode, ...seen, token: lock.fencingToken.toString() })}\n`);
}
client.close();
await app.close();
