import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The etcd binary: `ETCD_BIN`, else `etcd` on PATH. */
export const ETCD_BIN = process.env.ETCD_BIN ?? 'etcd';
export const ETCDCTL_BIN = process.env.ETCDCTL_BIN ?? 'etcdctl';

export const INSTALL_HINT =
  'Install etcd 3.4+: `apt-get install etcd-server etcd-client` (Debian/Ubuntu), or put the etcd release ' +
  'binaries on PATH (or point ETCD_BIN / ETCDCTL_BIN at them).';

/**
 * A free TCP port on loopback, chosen below Linux's ephemeral range (32768+): a port from that range can be
 * taken between our check and etcd's bind by any outgoing connection, such as one etcd member dialing another.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const handedOut = new Set<number>();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export interface EtcdMemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  initialCluster: string;
  initialState: 'new' | 'existing';
  extraArgs?: string[];
  /** Serve clients over TLS and require a client certificate signed by `ca`. */
  tls?: EtcdTls;
}

export interface EtcdTls {
  cert: string;
  key: string;
  ca: string;
}

/** One etcd process on loopback. Its pipes are always drained, so it never blocks on a full log pipe. */
export class EtcdProcess {
  private child: ChildProcess | undefined;
  private readonly log: string[] = [];
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly spec: EtcdMemberSpec) {}

  get endpoint(): string {
    return `${this.spec.tls ? 'https' : 'http'}://127.0.0.1:${this.spec.clientPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts etcd and resolves once it serves clients (its own log line says so). */
  async start(): Promise<void> {
    const { name, peerPort, dataDir, initialCluster, initialState, extraArgs = [], tls } = this.spec;
    const tlsArgs = tls ? ['--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : [];
    const args = [
      '--name',
      name,
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      this.endpoint,
      '--advertise-client-urls',
      this.endpoint,
      '--listen-peer-urls',
      `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peerPort}`,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      initialState,
      // The same for every member of one cluster (it seeds the cluster id), different between clusters.
      '--initial-cluster-token',
      `test-${createHash('sha1').update(initialCluster).digest('hex').slice(0, 12)}`,
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
      ...tlsArgs,
      ...extraArgs,
    ];
    const child = spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
    await new Promise<void>((resolve, reject) => {
      let buffer = '';
      const onData = (chunk: Buffer) => {
        buffer += chunk.toString();
        let nl = buffer.indexOf('\n');
        while (nl >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          this.log.push(line);
          if (this.log.length > 200) this.log.shift();
          if (line.includes('serving client traffic')) resolve();
          nl = buffer.indexOf('\n');
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new Error(`etcd not found (${ETCD_BIN}). ${INSTALL_HINT}`) : err),
      );
      // Rejecting after resolve() is a no-op, so this only matters before etcd served.
      child.once('exit', (code, signal) =>
        reject(new Error(`etcd ${name} exited (${code ?? signal}) before serving:\n${this.log.slice(-20).join('\n')}`)),
      );
    });
  }

  /** Stops etcd with `signal` (SIGTERM: graceful; SIGKILL: crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (signal !== 'SIGKILL') child.kill('SIGCONT');
    child.kill(signal);
    await this.exited;
    this.child = undefined;
  }

  /** Freezes the process (SIGSTOP): it keeps its sockets but answers nothing. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  recentLog(): string {
    return this.log.slice(-30).join('\n');
  }
}

/** A single-node etcd on free loopback ports with a throwaway data dir. */
export class EtcdServer extends EtcdProcess {
  static async start(extraArgs: string[] = [], tls?: EtcdTls): Promise<EtcdServer> {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const dataDir = mkdtempSync(join(scratchDir(), 'etcd-'));
    const server = new EtcdServer({
      name: 'solo',
      clientPort,
      peerPort,
      dataDir,
      initialCluster: `solo=http://127.0.0.1:${peerPort}`,
      initialState: 'new',
      extraArgs,
      tls,
    });
    try {
      await server.start();
    } catch (err) {
      // etcd could not be started or exited before serving: nothing runs, and nothing is left behind (the demo,
      // on a machine with no etcd binary, left an empty data dir at every run).
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    return server;
  }

  /** Stops etcd and deletes its data. */
  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    rmSync(this.spec.dataDir, { recursive: true, force: true });
  }
}

/**
 * Where etcd data directories go: `NESTJS_ETCD_LOCK_SCRATCH` when set (CI names its own, to find the etcd
 * processes its run started, and no other); else tmpfs when there is one: etcd fsyncs every write, and tests
 * should not wait on a disk.
 */
export function scratchDir(): string {
  const named = process.env.NESTJS_ETCD_LOCK_SCRATCH;
  if (named) {
    mkdirSync(named, { recursive: true });
    return named;
  }
  try {
    execFileSync('test', ['-w', '/dev/shm']);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** Runs `etcdctl` against `endpoints` and returns its stdout. */
export function etcdctl(endpoints: string, ...args: string[]): string {
  return execFileSync(ETCDCTL_BIN, ['--endpoints', endpoints, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'], // its warnings go to the error if it fails, not to the test output
  });
}

/** One of etcd's own plain counters or gauges (Prometheus, `/metrics`); fails on a metric etcd does not have. */
export async function etcdMetric(endpoint: string, name: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`etcd has no metric ${name}`);
  return Number(line.split(' ')[1]);
}

/**
 * One of etcd's own per-method gRPC counters (Prometheus, `/metrics`), summed over `endpoints`. The default,
 * `grpc_server_msg_received_total`, counts one per unary call and one per message on a stream (a watch
 * creation, a keepalive); `grpc_server_started_total` counts calls and streams opened.
 */
export async function grpcCounts(endpoints: readonly string[], metric = 'grpc_server_msg_received_total'): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const line = new RegExp(`^${metric}\\{.*grpc_method="(\\w+)".*\\} (\\d+)`);
  for (const endpoint of endpoints) {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    for (const row of text.split('\n')) {
      const match = line.exec(row);
      if (match) counts.set(match[1], (counts.get(match[1]) ?? 0) + Number(match[2]));
    }
  }
  return counts;
}

/**
 * How many KV requests (Range, Put, DeleteRange, Txn) and watch-stream messages etcd has received: lets a test
 * prove that a call sent nothing, or count what an operation costs.
 */
export async function etcdRequestCount(endpoint: string): Promise<number> {
  const counts = await grpcCounts([endpoint]);
  return ['Range', 'Put', 'DeleteRange', 'Txn', 'Watch'].reduce((sum, method) => sum + (counts.get(method) ?? 0), 0);
}
