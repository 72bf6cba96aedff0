// The checker's leader workload: while this instance leads election 'jepsen-leader', its `@OnLeadership` work
// loops read-modify-writes of a counter, written once through the term's fencedTxn() and once unfenced, until its
// term ends or it is told to quiesce or stop (commands.mjs). argv: <hosts> <identity>. One JSON line per operation.
// LEADER_PRIORITY=random: each worker campaigns with a leaderPriority of 0-3, so leaders hand over to the workers
// that outrank them as the nemesis kills and restarts them (transfers under faults).
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, LeaderElectionService, OnLeadership } from '../../dist/index.js';
import { onCommands } from './commands.mjs';
import { counterSection } from './counter-section.mjs';

const [hosts, identity] = process.argv.slice(2);
const priority = process.env.LEADER_PRIORITY === 'random' ? { leaderPriority: Math.floor(Math.random() * 4) } : {};
let stopping = false;
const client = new Etcd3({ hosts: hosts.split(',') });

class Counter {
  async work(leadership) {
    for (let seq = 0; !leadership.signal.aborted && !stopping; seq++) {
      const record = {
        identity,
        seq,
        ...(await counterSection(client, ['checker/leader-fenced', 'checker/leader-unfenced'], leadership, 'LeadershipLostError')),
      };
      process.stdout.write(`${JSON.stringify(record)}\n`);
      if (record.outcome === 'unknown') await new Promise((resolve) => setTimeout(resolve, 100)); // etcd unreachable: back off
    }
  }
}
Object.defineProperty(
  Counter.prototype,
  'work',
  Reflect.decorate([OnLeadership('jepsen-leader')], Counter.prototype, 'work', Object.getOwnPropertyDescriptor(Counter.prototype, 'work')),
);
Injectable()(Counter);

class WorkerModule {}
Module({
  imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 2, requestTimeout: 1000, ...priority })],
  providers: [Counter],
})(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
onCommands(app, {
  // Resigning ends the term: its work stops, and the election key is deleted. The default election too (every
  // instance campaigns in it): nothing is left on the lease.
  letGo: async () => {
    stopping = true;
    const elections = app.get(LeaderElectionService);
    await Promise.all([elections.resign('jepsen-leader'), elections.resign()]);
  },
  close: async () => {
    await app.close();
    client.close();
  },
});
