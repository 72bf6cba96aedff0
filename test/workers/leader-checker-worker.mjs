// The checker's leader workload: while this instance leads election 'jepsen-leader', its `@OnLeadership` work
// loops read-modify-writes of a counter, written once through the term's fencedTxn() and once unfenced, until its
// term ends or "stop" arrives on stdin. argv: <hosts> <identity>. One JSON line per operation.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, OnLeadership } from '../../dist/index.js';

const [hosts, identity] = process.argv.slice(2);
let stopping = false;
const now = () => performance.timeOrigin + performance.now();
const client = new Etcd3({ hosts: hosts.split(',') });

class Counter {
  async work(leadership) {
    const token = leadership.fencingToken.toString();
    for (let seq = 0; !leadership.signal.aborted && !stopping; seq++) {
      const start = now();
      let fencedRead = -1;
      let outcome = 'unknown';
      let unfenced = false;
      let sent = start;
      try {
        fencedRead = Number((await client.get('checker/leader-fenced').string()) ?? '0');
        const unfencedRead = Number((await client.get('checker/leader-unfenced').string()) ?? '0');
        await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 18));
        sent = now();
        try {
          await leadership.fencedTxn().put('checker/leader-fenced', String(fencedRead + 1)).commit();
          outcome = 'ok';
        } catch (err) {
          outcome = err.name === 'LeadershipLostError' ? 'rejected' : 'unknown';
        }
        try {
          await client.put('checker/leader-unfenced').value(String(unfencedRead + 1));
          unfenced = true;
        } catch {}
      } catch {
        outcome = 'rejected'; // a read failed: no write was attempted
      }
      process.stdout.write(`${JSON.stringify({ identity, token, seq, start, end: sent, ok: outcome === 'ok', outcome, fencedRead, unfenced })}\n`);
      if (outcome === 'unknown') await new Promise((resolve) => setTimeout(resolve, 100)); // etcd unreachable: back off
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
  imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 2, requestTimeout: 1000 })],
  providers: [Counter],
})(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
process.stdin.on('data', async () => {
  stopping = true;
  process.stdin.destroy();
  await app.close();
  client.close();
});
