// The checker workload: critical sections under lock 'jepsen', each a read-modify-write of a counter, written
// once through fencedTxn() and once unfenced, until "stop" arrives on stdin. argv: <hosts> <identity>.
// One JSON line per operation.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, LockService } from '../../dist/index.js';
import { counterSection } from './counter-section.mjs';

const [hosts, identity] = process.argv.slice(2);
let stopping = false;
process.stdin.on('data', () => {
  stopping = true;
  process.stdin.destroy();
});
class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 2, requestTimeout: 1000 })] })(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const locks = app.get(LockService);
const client = new Etcd3({ hosts: hosts.split(',') });

while (!stopping) {
  let lock;
  try {
    lock = await locks.acquire('jepsen', { timeout: 10000 });
  } catch {
    // No session, or etcd unreachable: nothing ran. Back off (a retry loop of rejected promises would starve
    // the event loop, and with it the re-grant of the session).
    await new Promise((resolve) => setTimeout(resolve, 100));
    continue;
  }
  const record = { identity, ...(await counterSection(client, ['checker/fenced', 'checker/unfenced'], lock, 'LockLostError')) };
  await lock.release();
  process.stdout.write(`${JSON.stringify(record)}\n`);
}
client.close();
await app.close();
