// A replica with two per-second scheduled jobs, as an OS process whose wall clock the test skews (libfaketime):
// - 'exactly-once': retries 3, catch-up of every missed fire time within 2 minutes, overlapping runs allowed (a
//   paused runner's fire time must not make the next ones skip);
// - 'at-most-once': no retries, no catch-up.
// argv: <endpoints, comma-separated> <identity> <ttl>
// A run takes 300 ms (so that the nemesis can kill or pause its replica mid-run); its last act is a write to an
// external ledger, fenced by the run's token: `ledger/<job>/<fire time>/<token>`. A run that lost its hold cannot
// write it. Prints JSON lines: {event:'ready'}, {event:'start'|'end', at, job, fireTime, kind, attempt, token} (`at`
// by this process's skewed clock).
// "stop" on stdin closes the app (a clean stop: runs going on end and are recorded).
const [endpoints, identity, ttl] = process.argv.slice(2);

await import('reflect-metadata');
const { Injectable, Module } = await import('@nestjs/common');
const { NestFactory } = await import('@nestjs/core');
const { Cron, ScheduleModule } = await import('@nestjs/schedule');
const { EtcdLockModule, EtcdUnavailableError, ScheduledJob, ScheduledJobsService } = await import('../../dist/index.js');

const print = (line) => process.stdout.write(`${JSON.stringify({ identity, ...line })}\n`);

async function work() {
  const run = ScheduledJobsService.currentRun();
  const hold = ScheduledJobsService.current();
  const line = {
    job: run.job,
    fireTime: run.fireTime.getTime(),
    kind: run.kind,
    attempt: run.attempt,
    token: hold.fencingToken.toString(),
  };
  print({ event: 'start', at: Date.now(), ...line });
  await new Promise((resolve) => setTimeout(resolve, 300));
  // As a job would: a write etcd did not answer is sent again while the run holds (a lost hold throws instead).
  for (let attempt = 1; ; attempt++) {
    try {
      await hold.fencedTxn().put(`ledger/${run.job}/${line.fireTime}/${line.token}`, identity).commit();
      break;
    } catch (err) {
      if (!(err instanceof EtcdUnavailableError) || !hold.isHeld || attempt >= 20) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  print({ event: 'end', at: Date.now(), ...line });
}

class Jobs {
  async exactlyOnce() {
    await work();
  }
  async atMostOnce() {
    await work();
  }
}
for (const [method, decorators] of [
  [
    'exactlyOnce',
    [Cron('* * * * * *'), ScheduledJob('exactly-once', { retries: 3, catchUp: 'all', catchUpWindowMs: 120_000, overlap: 'allow' })],
  ],
  ['atMostOnce', [Cron('* * * * * *'), ScheduledJob('at-most-once', { catchUp: 'none' })]],
]) {
  Object.defineProperty(
    Jobs.prototype,
    method,
    Reflect.decorate(decorators, Jobs.prototype, method, Object.getOwnPropertyDescriptor(Jobs.prototype, method)),
  );
}
Injectable()(Jobs);

class WorkerModule {}
Module({
  imports: [
    ScheduleModule.forRoot(),
    EtcdLockModule.forRoot({ hosts: endpoints.split(','), identity, ttl: Number(ttl), requestTimeout: 1000 }),
  ],
  providers: [Jobs],
})(WorkerModule);

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
print({ event: 'ready' });
process.stdin.on('data', async (data) => {
  if (data.toString().includes('stop')) {
    process.stdin.destroy();
    await app.close();
  }
});
