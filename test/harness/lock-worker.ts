import { NodeProcess } from './processes.js';

export interface WorkerEvent {
  event: string;
  at: number;
  identity: string;
  token?: string;
  error?: string;
  reason?: string;
  ok?: boolean;
}

/** A `test/workers/lock-worker.mjs` process: a replica the test drives, pauses and kills. */
export class LockWorker {
  readonly process: NodeProcess;

  constructor(
    hosts: string[],
    readonly identity: string,
    ttl: number,
  ) {
    this.process = new NodeProcess('test/workers/lock-worker.mjs', [hosts.join(','), identity, String(ttl)]);
    this.process.showIfLeft = true;
  }

  get events(): WorkerEvent[] {
    return this.process.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as WorkerEvent);
  }

  send(cmd: string, args: Record<string, string> = {}): void {
    this.process.send(JSON.stringify({ cmd, ...args }));
  }

  /** The next event of this kind from now on (or from line `from`). */
  async next(event: string, from = this.process.lines.length): Promise<WorkerEvent> {
    const line = await this.process.line((l) => l.includes(`"event":"${event}"`), from);
    return JSON.parse(line) as WorkerEvent;
  }

  ready(): Promise<WorkerEvent> {
    return this.next('ready', 0);
  }

  async acquire(name: string): Promise<WorkerEvent> {
    const from = this.process.lines.length;
    this.send('acquire', { name });
    return Promise.race([this.next('acquired', from), this.next('acquire-failed', from)]);
  }

  pause(): void {
    this.process.child.kill('SIGSTOP');
  }

  resume(): void {
    this.process.child.kill('SIGCONT');
  }

  async close(): Promise<void> {
    this.process.showIfLeft = false;
    this.send('close');
    await this.process.exited;
  }
}
