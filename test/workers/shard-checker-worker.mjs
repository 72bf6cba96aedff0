// The checker's sharded workload: a `@Sharded('jepsen-shards', { shards: 4 })` method called in a loop; each call
// runs, for every shard this instance owns, the read-modify-write of that shard's counter, once through the
// shard's fencedTxn() and once unfenced. argv: <hosts> <identity>. One JSON line per operation, with its shard;
// commands on stdin (see commands.mjs).
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, Sharded, ShardingService } from '../../dist/index.js';
import { onCommands } from './commands.mjs';
import { counterSection } from './counter-section.mjs';

const [hosts, identity] = process.argv.slice(2);
let stopping = false;
/** Each shard owned under one token makes many operations, numbered in order (as a leader's term does). */
const seqs = new Map();
const client = new Etcd3({ hosts: hosts.split(',') });

class Counter {
  async work() {
    const set = ShardingService.current();
    await Promise.all(
      set.shards.map(async (shard) => {
        if (!shard.isOwned) return;
        const counters = [`checker/shard-fenced-${shard.index}`, `checker/shard-unfenced-${shard.index}`];
        const term = `${shard.index}/${shard.fencingToken}`;
        const seq = seqs.get(term) ?? 0;
        seqs.set(term, seq + 1);
        const record = { identity, shard: shard.index, seq, ...(await counterSection(client, counters, shard, 'ShardLostError')) };
        process.stdout.write(`${JSON.stringify(record)}\n`);
      }),
    );
    return true;
  }
}
Object.defineProperty(
  Counter.prototype,
  'work',
  Reflect.decorate(
    [Sharded('jepsen-shards', { shards: 4 })],
    Counter.prototype,
    'work',
    Object.getOwnPropertyDescriptor(Counter.prototype, 'work'),
  ),
);
Injectable()(Counter);

class WorkerModule {}
Module({
  imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: 2, requestTimeout: 1000 })],
  providers: [Counter],
})(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const counter = app.get(Counter);
const loop = (async () => {
  while (!stopping) {
    // Owning no shard (or etcd unreachable): the call is skipped; look again shortly.
    if ((await counter.work()) === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
})();
onCommands(app, {
  letGo: async () => {
    stopping = true;
    await loop;
    await app.get(ShardingService).leave('jepsen-shards');
  },
  close: async () => {
    await app.close();
    client.close();
  },
});
