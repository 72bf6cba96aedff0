import { AsyncLocalStorage } from 'node:async_hooks';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConsoleLogger, type DynamicModule, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EtcdLockEventName, EtcdLockEvents } from 'nestjs-etcd-lock';
import { InMemoryEtcd } from 'nestjs-etcd-lock/testing';
import { filter } from 'rxjs';
import { isNestStartupLine, label, type Replica, type ReplicaSpec } from './replica.js';

/** What the demo uses of the built sample app (loaded at run time from `sample-app/dist`). */
interface SampleApp {
  AppModule: { forRoot(config: object, backend: unknown): DynamicModule };
  inMemoryBackend(config: object, etcd: InMemoryEtcd): unknown;
  JobsService: Type<{ counts: { leaderTicks: number; reportRuns: number } }>;
}

export async function loadSampleApp(root: string): Promise<SampleApp> {
  const load = (file: string) => import(pathToFileURL(join(root, 'sample-app', 'dist', file)).href);
  const [app, memory, jobs] = await Promise.all([load('app.module.js'), load('in-memory.js'), load('jobs.service.js')]);
  return { AppModule: app.AppModule, inMemoryBackend: memory.inMemoryBackend, JobsService: jobs.JobsService };
}

/**
 * Which replica the code running now belongs to. Nest has one logger per process, so the replicas share one,
 * and it labels each line from here; the in-memory etcd delivers each app's watch events in that app's context.
 */
const current = new AsyncLocalStorage<InMemoryReplica>();

class ReplicaLogger extends ConsoleLogger {
  protected override printMessages(messages: unknown[], context = '', logLevel: Parameters<ConsoleLogger['log']>[0] = 'log'): void {
    const replica = current.getStore();
    if (replica && !replica.alive) return; // a crashed replica says nothing more
    for (const message of messages) {
      const text = `${String(logLevel).toUpperCase()} [${context}] ${message instanceof Error ? message.message : String(message)}`;
      if (isNestStartupLine(text)) continue;
      console.log(replica ? `${replica.label} ${text}` : text);
    }
  }
}
export const replicaLogger = new ReplicaLogger();

/**
 * A replica as a Nest app in this process, on its own connection to a shared in-memory etcd: the library's code
 * paths are the real ones. A crash cuts its connection first (so its lease is not revoked and expires after the
 * TTL), then stops its timers and server, as a killed process would.
 */
export class InMemoryReplica implements Replica {
  alive = true;
  readonly label: string;
  private readonly client: InMemoryEtcd;
  private readonly started: Promise<INestApplication>;
  private counts = { leaderTicks: 0, reportRuns: 0 };
  private readonly gained: Array<() => void> = [];

  constructor(
    private readonly spec: ReplicaSpec,
    sample: SampleApp,
    etcd: InMemoryEtcd,
  ) {
    this.label = label(spec);
    this.client = etcd.connect();
    const config = { etcdHosts: [], port: spec.port, identity: spec.name, ttl: spec.ttl, prefix: 'sample/' };
    this.started = current.run(this, async () => {
      const module = sample.AppModule.forRoot(config, sample.inMemoryBackend(config, this.client));
      const app = await NestFactory.create(module, { logger: replicaLogger });
      this.counts = app.get(sample.JobsService).counts;
      app
        .get(EtcdLockEvents)
        .events$.pipe(filter((e) => e.type === EtcdLockEventName.LeadershipChanged && e.leader))
        .subscribe(() => {
          for (const resolve of this.gained.splice(0)) resolve();
        });
      await app.listen(spec.port, '127.0.0.1');
      replicaLogger.log(`listening on http://127.0.0.1:${spec.port} as ${spec.name}`, 'Sample');
      return app;
    });
  }

  get name(): string {
    return this.spec.name;
  }

  get port(): number {
    return this.spec.port;
  }

  get leaderTicks(): number {
    return this.counts.leaderTicks;
  }

  get reportRuns(): number {
    return this.counts.reportRuns;
  }

  async ready(): Promise<void> {
    await this.started;
  }

  leadershipGained(): Promise<void> {
    return new Promise((resolve) => this.gained.push(resolve));
  }

  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    const app = await this.started;
    if (signal === 'SIGKILL') {
      this.client.disconnect();
      this.alive = false;
      await current.run(this, () => app.close());
    } else {
      await current.run(this, () => app.close());
      this.alive = false;
    }
    this.client.close();
  }
}
