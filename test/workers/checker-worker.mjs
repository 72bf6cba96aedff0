// The checker workload: critical sections under lock 'jepsen', each a read-modify-write of a counter, written
// once through fencedTxn() and once unfenced, until "stop" arrives on stdin. argv: <hosts> <identity>.
// One JSON line per operation.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { EtcdLockModule, LockService } from '../../dist/index.js';

const [hosts, identity] = process.argv.slice(2);
let stopping = false;
process.stdin.on('data', () => {
  stopping = true;
  process.stdin.destroy();
});
const now = () => performance.timeOrigin + performance.now();
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
  const start = now();
  let fencedRead = -1;
  // ok: etcd applied the fenced write; rejected: the fence failed (not applied); unknown: no answer (may be).
  let outcome = 'unknown';
  let unfenced = false;
  let sent = start;
  try {
    fencedRead = Number((await client.get('checker/fenced').string()) ?? '0');
    const unfencedRead = Number((await client.get('checker/unfenced').string()) ?? '0');
    await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 18));
    sent = now();
    try {
      await lock.fencedTxn().put('checker/fenced', String(fencedRead + 1)).commit();
      outcome = 'ok';
    } catch (err) {
      outcome = err.name === 'LockLostError' ? 'rejected' : 'unknown';
    }
    try {
      await client.put('checker/unfenced').value(String(unfencedRead + 1));
      unfenced = true;
    } catch {}
  } catch {
    outcome = 'rejected'; // a read failed: no write was attempted
  }
  const record = { identity, token: lock.fencingToken.toString(), start, end: sent, ok: outcome === 'ok', outcome, fencedRead, unfenced };
  await lock.release();
  process.stdout.write(`${JSON.stringify(record)}\n`);
}
client.close();
await app.close();
