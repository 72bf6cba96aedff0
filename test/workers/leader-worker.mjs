// A replica with leader-only work, as an OS process: a per-second `@Cron` `@LeaderOnly()` job that runs until its
// term ends, and an `@OnLeadership()` method that holds work for the term. argv: <hosts, comma-separated>
// <identity> <ttl>. Prints JSON lines with real-clock times (performance.timeOrigin + now):
//   {event:'leader', leader, token, at}      each change of this instance's leadership
//   {event:'run-start'|'run-end', token, at, reason?}   the @LeaderOnly job
//   {event:'hold-start'|'hold-end', token, at, reason?} the @OnLeadership work
//   {event:'write', ok, error?, token}       after "write" on stdin: a fenced write with the last term seen
//   {event:'session-lost', at, reason}       this instance's session was lost
// "transfer <identity>" on stdin hands the leadership to that candidate: {event:'transferred', to, at} (or
// {event:'transferred', error}). "stop" on stdin closes the app (a clean stop).
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cron, ScheduleModule } from '@nestjs/schedule';
import { EtcdLockModule, EtcdLockEventName, EtcdLockEvents, LeaderElectionService, LeaderOnly, OnLeadership } from '../../dist/index.js';
import { whenAborted } from '../../dist/util/wait-signal.js';

const [hosts, identity, ttl] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify({ identity, ...line })}\n`);
let lastTerm;

class Jobs {
  running = false;

  async long() {
    const term = LeaderElectionService.current();
    if (this.running || !term) return;
    this.running = true;
    lastTerm = term;
    print({ event: 'run-start', token: term.fencingToken.toString(), at: now() });
    const reason = await whenAborted(term.signal);
    print({ event: 'run-end', token: term.fencingToken.toString(), at: now(), reason: reason?.reason });
    this.running = false;
  }

  async hold(leadership) {
    lastTerm = leadership;
    print({ event: 'hold-start', token: leadership.fencingToken.toString(), at: now() });
    const reason = await whenAborted(leadership.signal);
    print({ event: 'hold-end', token: leadership.fencingToken.toString(), at: now(), reason: reason?.reason });
  }
}
const decorate = (decorators, name) =>
  Object.defineProperty(
    Jobs.prototype,
    name,
    Reflect.decorate(decorators, Jobs.prototype, name, Object.getOwnPropertyDescriptor(Jobs.prototype, name)),
  );
decorate([Cron('* * * * * *'), LeaderOnly()], 'long');
decorate([OnLeadership()], 'hold');
Injectable()(Jobs);

class WorkerModule {}
Module({
  imports: [
    ScheduleModule.forRoot(),
    EtcdLockModule.forRoot({ hosts: hosts.split(','), identity, ttl: Number(ttl), requestTimeout: 1000 }),
  ],
  providers: [Jobs],
})(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
app.get(EtcdLockEvents).events$.subscribe((e) => {
  if (e.type === EtcdLockEventName.LeadershipChanged)
    print({ event: 'leader', leader: e.leader, token: e.fencingToken?.toString(), at: now() });
  // Lost by its local deadline (a CPU-starved process misses keepalives): a test tells such a slow hand-over apart.
  if (e.type === EtcdLockEventName.SessionLost) print({ event: 'session-lost', at: now(), reason: e.reason });
});
print({ event: 'ready' });
process.stdin.on('data', async (data) => {
  const text = data.toString();
  if (text.includes('write')) {
    try {
      await lastTerm.fencedTxn().put('leader-worker/stale', identity).commit();
      print({ event: 'write', ok: true, token: lastTerm.fencingToken.toString() });
    } catch (err) {
      print({ event: 'write', ok: false, error: err.name, token: lastTerm?.fencingToken.toString() });
    }
  }
  const transfer = /transfer (\S+)/.exec(text);
  if (transfer) {
    try {
      const to = await app.get(LeaderElectionService).transfer(undefined, transfer[1]);
      print({ event: 'transferred', to, at: now() });
    } catch (err) {
      print({ event: 'transferred', error: err.name, at: now() });
    }
  }
  if (text.includes('stop')) {
    process.stdin.destroy();
    await app.close();
  }
});
