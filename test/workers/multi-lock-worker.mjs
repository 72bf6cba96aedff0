// A process that takes a set of locks with withLocks, round after round. argv: <hosts> <identity> <names,comma>
// <rounds>. Waits for "go" on stdin; prints {identity, round, start, end} from inside each round (real-clock ms,
// performance.timeOrigin + now) and exits 0 after the last round and a clean close.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EtcdLockModule, LockService } from '../../dist/index.js';

const [hosts, identity, names, rounds] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();

class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 10 })] })(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const locks = app.get(LockService);
process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy();
for (let round = 0; round < Number(rounds); round++) {
  await locks.withLocks(names.split(','), async () => {
    const start = now();
    await new Promise((resolve) => setImmediate(resolve));
    process.stdout.write(`${JSON.stringify({ identity, round, start, end: now() })}\n`);
  });
}
await app.close();
