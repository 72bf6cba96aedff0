import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/** One replica of the sample app, as the demo drives it: a process on a real etcd, or an app in this process. */
export interface Replica {
  readonly name: string;
  readonly port: number;
  readonly alive: boolean;
  /** How many times it ran the leader-only tick and the singleton report. */
  readonly leaderTicks: number;
  readonly reportRuns: number;
  /** Resolves once it serves HTTP. */
  ready(): Promise<void>;
  /** Resolves the next time it becomes leader. */
  leadershipGained(): Promise<void>;
  /** SIGTERM: a clean stop (resign, revoke). SIGKILL: a crash (its lease is left to expire). */
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export interface ReplicaSpec {
  readonly name: string;
  readonly port: number;
  /** ANSI colour of its label. */
  readonly color: number;
  readonly ttl: number;
}

/** The label a replica's output lines carry. */
export function label(spec: ReplicaSpec): string {
  return `\x1b[${spec.color}m[${spec.name}]\x1b[0m`;
}

/** A replica as its own OS process (`sample-app/dist/main.js`) on a real etcd; its log is its only channel. */
export class ProcessReplica implements Replica {
  leaderTicks = 0;
  reportRuns = 0;
  alive = true;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly listeners: Array<(line: string) => void> = [];

  constructor(
    private readonly spec: ReplicaSpec,
    root: string,
    endpoint: string,
  ) {
    const { name, port, ttl } = spec;
    this.child = spawn(process.execPath, [join(root, 'sample-app', 'dist', 'main.js')], {
      env: { ...process.env, ETCD_HOSTS: endpoint, PORT: String(port), IDENTITY: name, LOCK_TTL: String(ttl), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.replace(/^\[Nest\] \d+\s+-\s+[^A-Z]*(AM|PM)?\s+/, '');
        if (line.includes('leader tick')) this.leaderTicks++;
        if (line.includes('report started')) this.reportRuns++;
        if (!isNestStartupLine(line)) console.log(`${label(spec)} ${line}`);
        for (const listener of [...this.listeners]) listener(line);
      }
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', () => {
        this.alive = false;
        resolve();
      }),
    );
  }

  get name(): string {
    return this.spec.name;
  }

  get port(): number {
    return this.spec.port;
  }

  ready(): Promise<void> {
    return this.next('listening on');
  }

  leadershipGained(): Promise<void> {
    return this.next('Leadership gained');
  }

  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** Resolves at the first line from now on that contains `text`. */
  private next(text: string): Promise<void> {
    return new Promise((resolve) => {
      const listener = (line: string) => {
        if (!line.includes(text)) return;
        this.listeners.splice(this.listeners.indexOf(listener), 1);
        resolve();
      };
      this.listeners.push(listener);
    });
  }
}

/** Nest's own start-up lines (modules loaded, routes mapped): the demo's story is what the replicas do. */
const NEST_STARTUP = /^(LOG|DEBUG|VERBOSE) \[(InstanceLoader|RoutesResolver|RouterExplorer|NestFactory|NestApplication)\]/;

/** Whether `line` (without Nest's `[Nest] pid - date` prefix) is one of Nest's start-up lines. */
export function isNestStartupLine(line: string): boolean {
  return NEST_STARTUP.test(line);
}
