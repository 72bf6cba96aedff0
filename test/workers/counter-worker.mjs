// One OS process incrementing a shared etcd counter under the lock, with an unfenced read-modify-write:
// if two processes ever held the lock at once, an update would be lost.
// argv: <endpoint> <increments> <identity>. Prints "ready", waits for "go" on stdin, prints one JSON line a write.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, LockService } from '../../dist/index.js';

const [endpoint, increments, identity] = process.argv.slice(2);

class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: endpoint, identity, ttl: 5 })] })(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const locks = app.get(LockService);
const client = new Etcd3({ hosts: endpoint });

process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy(); // an open stdin would keep this process alive after its work

for (let i = 0; i < Number(increments); i++) {
  await locks.withLock('counter', async (lock) => {
    const value = Number((await client.get('counter').string()) ?? '0');
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
    await client.put('counter').value(String(value + 1));
    process.stdout.write(`${JSON.stringify({ value: value + 1, token: lock.fencingToken.toString(), identity })}\n`);
  });
}
client.close();
await app.close();
