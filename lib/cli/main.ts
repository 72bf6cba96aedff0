#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { CliError, ExitCode, describeFailure } from './cli-error.js';
import { type Connection, type ConnectionFlags, connect } from './connection.js';
import { askOnTerminal, forceRelease, transferElection } from './force-release.js';
import { readInventory } from '../inventory/inventory.js';
import { inventoryJson, renderInventory } from './render.js';
import { printable, printableJson } from '../util/printable.js';
import { watchInventory } from '../inventory/inventory-watch.js';
import { addJobCommands } from './jobs.js';
import { addDashboardCommand } from './dashboard.js';

const EXIT_CODES = `
Exit codes:
  0  done
  1  failed (any other error)
  2  bad flags or arguments
  3  etcd unreachable (the message names the endpoints)
  4  etcd refused the credentials, or the user lacks permission
  5  no such lock or election is held, or no such scheduled job
  6  not done: not confirmed, or the holder changed before the delete`;

const DANGER = `
Why this is dangerous: etcd then deletes the holder's key and the holder's signal aborts, but code the holder
already started keeps running until it checks its signal. Until then two processes may run the guarded work.
Only writes fenced by the fencing token (fencedTxn) are safe from the old holder. Use it for a holder that is
stuck, not for one that is merely slow; a crashed holder's key goes by itself when its lease's TTL runs out.`;

/** The commands, their flags and their help. */
export function program(): Command {
  const cli = new Command('nestjs-etcd-lock')
    .description("Inspect and administer nestjs-etcd-lock's locks, elections, shards and sessions in etcd")
    .addOption(new Option('--endpoints <list>', 'etcd endpoints, comma-separated').env('ETCDCTL_ENDPOINTS').default('127.0.0.1:2379'))
    .addOption(new Option('--prefix <prefix>', "the library's key prefix (its `prefix` option)").env('NESTJS_ETCD_LOCK_PREFIX').default(''))
    .addOption(new Option('--user <name[:password]>', 'etcd user').env('ETCDCTL_USER'))
    .addOption(new Option('--password <password>', "the user's password").env('ETCDCTL_PASSWORD'))
    .addOption(new Option('--cacert <file>', 'CA certificate that signed etcd’s (turns TLS on)').env('ETCDCTL_CACERT'))
    .addOption(new Option('--cert <file>', 'client certificate').env('ETCDCTL_CERT'))
    .addOption(new Option('--key <file>', "client certificate's private key").env('ETCDCTL_KEY'))
    .addOption(new Option('--command-timeout <ms>', 'deadline of each etcd request').default('5000'))
    .addHelpText('after', EXIT_CODES)
    .showHelpAfterError()
    .exitOverride();

  cli
    .command('status')
    .description('every lock (holder, fencing token, waiters in order, TTL left), election, shard group and session')
    .option('--json', 'machine output (with --watch: one JSON document per line)')
    .option('--watch', 'print again after every change, from etcd watches (no polling) until interrupted')
    .action(async (opts: { json?: boolean; watch?: boolean }, cmd: Command) => {
      await withConnection(cmd, async (conn) => {
        const where = { endpoints: conn.endpoints, prefix: conn.prefix };
        const show = opts.json
          ? (inv: Parameters<typeof renderInventory>[0]) =>
              process.stdout.write(`${printableJson(JSON.stringify(inventoryJson(inv), null, opts.watch ? undefined : 2))}\n`)
          : (inv: Parameters<typeof renderInventory>[0]) => {
              // On a terminal, redraw in place; in a pipe, one report after another.
              if (opts.watch && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
              process.stdout.write(renderInventory(inv, where));
            };
        if (!opts.watch) return show(await readInventory(conn.rpc, conn.prefix));
        const stop = new AbortController();
        const interrupt = () => stop.abort();
        process.once('SIGINT', interrupt).once('SIGTERM', interrupt);
        try {
          await watchInventory(conn.rpc, conn.prefix, show, stop.signal);
        } finally {
          process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
        }
      });
    });

  for (const [command, kind, what] of [
    ['release', 'lock', "Delete a lock holder's key: its signal aborts and the next waiter takes over"],
    ['resign', 'election', "Delete an election leader's key: its term ends and the next candidate leads"],
  ] as const) {
    cli
      .command(`${command} <name>`)
      .description(what)
      .option('-y, --yes', 'do not ask for confirmation')
      .addHelpText('after', DANGER)
      .action(async (name: string, opts: { yes?: boolean }, cmd: Command) => {
        await withConnection(cmd, (conn) =>
          forceRelease(conn, { kind, name, yes: opts.yes === true, ask: askOnTerminal, print: (line) => console.log(line) }),
        );
      });
  }
  cli
    .command('transfer <election>')
    .description('Hand an election to a candidate (or the next in line) with nobody leading in between')
    .option('--to <identity>', 'the candidate to lead next (default: the next in line)')
    .option('-y, --yes', 'do not ask for confirmation')
    .addHelpText('after', DANGER)
    .action(async (election: string, opts: { to?: string; yes?: boolean }, cmd: Command) => {
      await withConnection(cmd, (conn) =>
        transferElection(conn, { election, to: opts.to, yes: opts.yes === true, ask: askOnTerminal, print: (line) => console.log(line) }),
      );
    });
  addJobCommands(cli, withConnection);
  addDashboardCommand(cli, withConnection);
  return cli;
}

async function withConnection(cmd: Command, fn: (conn: Connection) => Promise<void>): Promise<void> {
  const flags = cmd.optsWithGlobals<ConnectionFlags>();
  const conn = connect(flags);
  try {
    await fn(conn);
  } catch (err) {
    throw describeFailure(err, conn.endpoints);
  } finally {
    conn.close();
  }
}

/** Runs the CLI on `argv`; resolves with the exit code (errors are printed, one line). */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync([...argv], { from: 'user' });
    return ExitCode.Ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander already printed its message.
      return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    }
    const failure = err instanceof CliError ? err : describeFailure(err, []);
    console.error(`nestjs-etcd-lock: ${printable(failure.message)}`);
    return failure.exitCode;
  }
}

// The bin: `npx nestjs-etcd-lock …`.
process.exitCode = await run(process.argv.slice(2));
