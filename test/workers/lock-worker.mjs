// A replica driven over stdin, for fault tests that pause (SIGSTOP) or kill it.
// argv: <hosts, comma-separated> <identity> <ttl>
// stdin: one JSON command a line: {cmd:'acquire', name} | {cmd:'write', key, value} | {cmd:'release'} | {cmd:'close'}
// stdout: one JSON event a line, each with `at` (real clock, ms): ready, acquired {token}, acquire-failed {error},
// aborted {reason}, write {ok, error}, released.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EtcdLockModule, LockService } from '../../dist/index.js';
import { whenAborted } from '../../dist/util/wait-signal.js';

const [hosts, identity, ttl] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const emit = (event, data = {}) => process.stdout.write(`${JSON.stringify({ event, at: now(), identity, ...data })}\n`);

class WorkerModule {}
Module({
  imports: [EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: Number(ttl), requestTimeout: 1000 })],
})(WorkerModule);
const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
const locks = app.get(LockService);
let lock;

const commands = {
  async acquire({ name }) {
    try {
      lock = await locks.acquire(name);
      void whenAborted(lock.signal).then((reason) => emit('aborted', { reason: reason?.name }));
      emit('acquired', { token: lock.fencingToken.toString() });
    } catch (err) {
      emit('acquire-failed', { error: err.name, message: err.message });
    }
  },
  async write({ key, value }) {
    try {
      await lock.fencedTxn().put(key, value).commit();
      emit('write', { ok: true });
    } catch (err) {
      emit('write', { ok: false, error: err.name });
    }
  },
  async release() {
    await lock?.release();
    emit('released');
  },
  async close() {
    process.stdin.destroy();
    await app.close();
  },
};

let buffer = '';
process.stdin.on('data', (chunk) => {
  buffer += chunk.toString();
  const lines = buffer.split('\n');
  buffer = lines.pop() ?? '';
  for (const line of lines) if (line.trim()) void commands[JSON.parse(line).cmd](JSON.parse(line));
});
emit('ready');
