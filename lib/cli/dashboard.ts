import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, userInfo } from 'node:os';
import { type Command, Option } from 'commander';
import { systemClock } from '../clock/clock.js';
import { DashboardServer } from '../dashboard/dashboard-server.js';
import { CliError, ExitCode } from './cli-error.js';
import type { Connection } from './connection.js';

type WithConnection = (cmd: Command, fn: (conn: Connection) => Promise<void>) => Promise<void>;

/** What `dashboard` serves on. */
export interface DashboardFlags {
  readonly port: number;
  readonly host: string;
  readonly actions: boolean;
}

/** A running page server: its address, and how to stop it (the pages' streams end, the watches stop). */
export interface ServedDashboard {
  readonly url: string;
  readonly server: DashboardServer;
  close(): Promise<void>;
}

/** Serves the dashboard on `conn` over Node's HTTP server, bound to `flags.host` (loopback by default). */
export async function serveDashboard(conn: Connection, flags: DashboardFlags): Promise<ServedDashboard> {
  const dashboard = new DashboardServer({
    rpc: conn.rpc,
    prefix: conn.prefix,
    endpoints: conn.endpoints,
    actions: flags.actions,
    basePath: '',
    by: `dashboard:${userInfo().username}@${hostname()}`,
    clock: systemClock,
  });
  const http = createServer((req, res) => {
    dashboard.handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(flags.port, flags.host, () => resolve());
  }).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(ExitCode.Failed, `cannot listen on ${flags.host}:${flags.port}: ${err.code ?? err.message}`);
  });
  const { port } = http.address() as AddressInfo;
  const host = flags.host.includes(':') ? `[${flags.host}]` : flags.host;
  return {
    url: `http://${host}:${port}/`,
    server: dashboard,
    async close() {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
      await dashboard.close();
    },
  };
}

/** `dashboard`: the live page, served until interrupted. */
export function addDashboardCommand(cli: Command, withConnection: WithConnection): void {
  cli
    .command('dashboard')
    .description('serve the live dashboard (locks, elections, shards, permits, sessions, jobs) from etcd watches')
    .addOption(new Option('--port <port>', 'port to listen on (0: any free port)').default('4000'))
    .addOption(
      new Option('--host <address>', 'address to bind; anything but loopback exposes the page to the network').default('127.0.0.1'),
    )
    .option('--actions', 'offer actions on the page (release, resign, pause, resume, trigger); read-only without it')
    .action(async (opts: { port: string; host: string; actions?: boolean }, cmd: Command) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new CliError(ExitCode.Usage, `--port must be 0-65535, got '${opts.port}'`);
      await withConnection(cmd, async (conn) => {
        const served = await serveDashboard(conn, { port, host: opts.host, actions: opts.actions === true });
        console.log(`dashboard on ${served.url} (${opts.actions ? 'actions enabled' : 'read-only'}); Ctrl-C stops it`);
        await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
        await served.close();
      });
    });
}
