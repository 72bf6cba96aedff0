// The checker workload: critical sections under lock 'jepsen' (or, with WORKLOAD=semaphore, under the one permit
// of semaphore 'jepsen-permits'), each a read-modify-write of a counter, written once through fencedTxn() and once
// unfenced. argv: <hosts> <identity>. One JSON line per operation; commands on stdin (see commands.mjs).
// Callers take the hold three ways, in turn: patiently, with a timeout shorter than a request's (it may give up
// while its join is in doubt), and with tryAcquire (it gives up when etcd does not answer). Beside them, a quick
// loop takes and lets go of a second name ('jepsen-quick') in the two ways that give up, as often as it can: many
// joins, so that stalls catch some in doubt, and the name must still be free for others afterwards.
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
const PATIENT_MS = 10000;
const acquire = (timeout) =>
  semaphore
    ? app.get(SemaphoreService).acquire('jepsen-permits', { limit: 1, timeout })
    : app.get(LockService).acquire('jepsen', { timeout });
const tryAcquire = () =>
  semaphore ? app.get(SemaphoreService).tryAcquire('jepsen-permits', { limit: 1 }) : app.get(LockService).tryAcquire('jepsen');
const ways = [() => acquire(PATIENT_MS), () => acquire(100 + Math.random() * 800), tryAcquire];
const quickWays = semaphore
  ? [
      () => app.get(SemaphoreService).tryAcquire('jepsen-quick-permits', { limit: 2 }),
      () => app.get(SemaphoreService).acquire('jepsen-quick-permits', { limit: 2, timeout: 50 + Math.random() * 450 }),
    ]
  : [
      () => app.get(LockService).tryAcquire('jepsen-quick'),
      () => app.get(LockService).acquire('jepsen-quick', { timeout: 50 + Math.random() * 450 }),
    ];
const client = new Etcd3({ hosts: hosts.split(',') });

let quiescing = false;
/** Takes that gave up because etcd did not answer: each may have left a join in doubt. */
let unanswered = 0;
const countUnanswered = (err) => {
  if (err?.name === 'EtcdUnavailableError') unanswered++;
};
const loop = (async () => {
  for (let turn = 0; !quiescing; turn++) {
    let lock;
    try {
      lock = await ways[turn % ways.length]();
    } catch (err) {
      countUnanswered(err);
      // No session, or etcd unreachable: nothing ran. Back off (a retry loop of rejected promises would starve
      // the event loop, and with it the re-grant of the session).
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    if (!lock) {
      // Busy (tryAcquire): try again a little later.
      await new Promise((resolve) => setTimeout(resolve, 20));
      continue;
    }
    const record = { identity, ...(await counterSection(client, counters, lock, 'LockLostError')) };
    await lock.release();
    process.stdout.write(`${JSON.stringify(record)}\n`);
  }
})();
const quickLoop = (async () => {
  for (let turn = 0; !quiescing; turn++) {
    try {
      await (await quickWays[turn % quickWays.length]())?.release();
    } catch (err) {
      countUnanswered(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
})();
onCommands(app, {
  letGo: async () => {
    quiescing = true;
    await Promise.all([loop, quickLoop]);
    process.stdout.write(`${JSON.stringify({ unanswered })}\n`);
  },
  close: async () => {
    client.close();
    await app.close();
  },
});
