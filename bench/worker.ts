/**
 * A replica in its own OS process, for the cross-process cases. argv: <role> <endpoints,comma-separated> <identity>
 * [args]. Prints JSON lines; waits for "go" on stdin before working and for "stop" before closing its app.
 * - pingpong <cycles>: acquire/release 'pingpong' `cycles` times; prints every acquire and release time.
 * - fair <callers> <durationMs>: `callers` loops acquire/release 'fair' until the time is up; prints the count.
 * - leader <ttl>: campaigns in 'bench-crash' and prints when it leads (the bench SIGKILLs it).
 * - idle: holds a session and does nothing; prints its CPU time (µs) at each "cpu" on stdin.
 * - shard <ttl> <shards>: joins the group 'bench-crash-shards' and prints its shards at each change (the bench
 *   SIGKILLs it).
 */
import { createInterface } from 'node:readline';
import { LeaderElectionService, LockService, ShardingService } from 'nestjs-etcd-lock';
import { filter, firstValueFrom } from 'rxjs';
import { now, startApp } from './app.js';

const [role, endpoints, identity, ...rest] = process.argv.slice(2);
const print = (line: object) => process.stdout.write(`${JSON.stringify({ identity, ...line })}\n`);
const commands = createInterface({ input: process.stdin });
const command = (name: string) => new Promise<void>((resolve) => commands.on('line', (line) => line.trim() === name && resolve()));

const ttl = role === 'leader' || role === 'shard' ? Number(rest[0]) : 10;
const app = await startApp(endpoints.split(','), { identity, ttl });
const locks = app.get(LockService);

if (role === 'idle') {
  print({ event: 'ready' });
  commands.on('line', (line) => {
    if (line.trim() !== 'cpu') return;
    const { user, system } = process.cpuUsage();
    print({ event: 'cpu', us: user + system });
  });
} else if (role === 'shard') {
  const sharding = app.get(ShardingService);
  await sharding.join('bench-crash-shards', { shards: Number(rest[1]) });
  sharding.owned('bench-crash-shards').subscribe((shards) => print({ event: 'shards', shards }));
} else if (role === 'leader') {
  await firstValueFrom(app.get(LeaderElectionService).changes('bench-crash').pipe(filter(Boolean)));
  print({ event: 'leader', at: now() });
} else {
  print({ event: 'ready' });
  await command('go');
  if (role === 'pingpong') {
    const events: Array<[number, number, number]> = []; // [token, acquiredAt, releasedAt]
    for (let i = 0; i < Number(rest[0]); i++) {
      const lock = await locks.acquire('pingpong');
      const acquiredAt = now();
      const releasedAt = now();
      await lock.release();
      events.push([Number(lock.fencingToken), acquiredAt, releasedAt]);
    }
    print({ event: 'done', events });
  } else if (role === 'fair') {
    const until = performance.now() + Number(rest[1]);
    let count = 0;
    await Promise.all(
      Array.from({ length: Number(rest[0]) }, async () => {
        while (performance.now() < until) {
          await (await locks.acquire('fair')).release();
          count++;
        }
      }),
    );
    print({ event: 'done', count });
  }
}
await command('stop');
commands.close();
await app.close();
