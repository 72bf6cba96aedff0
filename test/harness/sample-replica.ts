import { NodeProcess } from './processes.js';

/** One replica of the sample app (`sample-app/dist/main.js`, built by `npm run build:sample`) as an OS process. */
export class SampleReplica {
  readonly process: NodeProcess;

  constructor(
    endpoint: string,
    readonly identity: string,
    readonly port: number,
  ) {
    this.process = new NodeProcess('sample-app/dist/main.js', [], {
      ETCD_HOSTS: endpoint,
      PORT: String(port),
      IDENTITY: identity,
      // Longer than any test's timeout: a replica that stops hands over by resigning, never by its lease expiring.
      LOCK_TTL: '60',
      NO_COLOR: '1',
    });
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async get<T>(path: string): Promise<T> {
    return (await (await fetch(this.url(path))).json()) as T;
  }

  /** Resolves once it serves HTTP (its session granted, its campaigns joined). */
  ready(): Promise<string> {
    return this.process.line((l) => l.includes('listening on'));
  }

  /** Resolves with this replica once it logs a leadership gained at or after line `from`. */
  leads(from = 0): Promise<this> {
    return this.process.line((l) => l.includes('Leadership gained'), from).then(() => this);
  }

  /** A clean stop (SIGTERM runs the shutdown hooks), waited for. */
  async stop(): Promise<void> {
    this.process.kill('SIGTERM');
    await this.process.exited;
  }
}
