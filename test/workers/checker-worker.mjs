// The checker workload: critical sections under lock 'jepsen' (or, with WORKLOAD=semaphore, under the one permit
// of semaphore 'jepsen-permits'), each a read-modify-write of a counter, written once through fencedTxn() and once
// unfenced. argv: <hosts> <identity>. One JSON line per operation; commands on stdin (see commands.mjs).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, LockService, SemaphoreService } from '../../dist/index.js';
import { onCommands } from './commands.mjs';
import { counterSection } from './counter-section.mjs';

const [hosts, identity] = process.argv.slice(2);
const semaphore = process.env.WORKLOAD === 'semaphore';
const counters = semaphore ? ['checker/permit-fenced', 'checker/permit-unfenced'] : ['checker/fenced', 'checker/unfenced'];
class WorkerModule {}
Module({ imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 2, requestTimeout: 1000 })] })(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const acquire = semaphore
  ? () => app.get(SemaphoreService).acquire('jepsen-permits', { limit: 1, timeout: 10000 })
  : () => app.get(LockService).acquire('jepsen', { timeout: 10000 });
const client = new Etcd3({ hosts: hosts.split(',') });

let quiescing = false;
const loop = (async () => {
  while (!quiescing) {
    let lock;
    try {
      lock = await acquire();
    } catch {
      // No session, or etcd unreachable: nothing ran. Back off (a retry loop of rejected promises would starve
      // the event loop, and with it the re-grant of the session).
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    const record = { identity, ...(await counterSection(client, counters, lock, 'LockLostError')) };
    await lock.release();
    process.stdout.write(`${JSON.stringify(record)}\n`);
  }
})();
onCommands(app, {
  letGo: async () => {
    quiescing = true;
    await loop;
  },
  close: async () => {
    client.close();
    await app.close();
  },
});
