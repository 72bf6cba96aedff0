import { hostname, userInfo } from 'node:os';
import type { Command } from 'commander';
import { systemClock } from '../clock/clock.js';
import { UnknownJobError } from '../errors.js';
import type { JobRun } from '../scheduling/job-record.js';
import { JobControls } from '../scheduling/job-controls.js';
import type { JobStatus } from '../scheduling/job-status.js';
import { printableJson } from '../util/printable.js';
import { CliError, ExitCode } from './cli-error.js';
import type { Connection } from './connection.js';
import { table } from './render.js';

type WithConnection = (cmd: Command, fn: (conn: Connection) => Promise<void>) => Promise<void>;

/** `jobs list|pause|resume|trigger|history`: the scheduled jobs' controls across the fleet. */
export function addJobCommands(cli: Command, withConnection: WithConnection): void {
  const jobs = cli.command('jobs').description('scheduled jobs (@ScheduledJob): list, pause, resume, trigger, history');
  const controlsOf = (conn: Connection) => new JobControls(conn.rpc, conn.prefix, `cli:${userInfo().username}@${hostname()}`, systemClock);
  const known = async (controls: JobControls, name: string) => {
    try {
      return await controls.fireTimes(name);
    } catch (err) {
      if (err instanceof UnknownJobError) throw new CliError(ExitCode.NotFound, `no scheduled job '${name}' (no replica declared it)`);
      throw err;
    }
  };

  jobs
    .command('list')
    .description('every job: schedule, next fire time, paused or running, last run')
    .option('--json', 'machine output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withConnection(cmd, async (conn) => {
        const controls = controlsOf(conn);
        const statuses = await Promise.all(
          (await controls.names()).map(async (name) => controls.status(name, await known(controls, name))),
        );
        print(opts.json ? json(statuses) : renderJobs(statuses));
      });
    });

  for (const [command, what, act] of [
    ['pause', 'stop running the job on every replica (kept across restarts)', (c: JobControls, n: string) => c.pause(n)],
    ['resume', 'run the job again; fire times passed while paused are not caught up', null],
    ['trigger', 'run the job now, once, on one replica (recorded as manual)', (c: JobControls, n: string) => c.trigger(n)],
  ] as const) {
    jobs
      .command(`${command} <name>`)
      .description(what)
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        await withConnection(cmd, async (conn) => {
          const controls = controlsOf(conn);
          const fireTimes = await known(controls, name);
          await (act ? act(controls, name) : controls.resume(name, fireTimes));
          print(`${command}: ${name}\n`);
        });
      });
  }

  jobs
    .command('history <name>')
    .description("the job's recorded runs, newest first: fire time, attempt, how, outcome, replica, duration, token")
    .option('--limit <n>', 'fire times to show', '20')
    .option('--json', 'machine output')
    .action(async (name: string, opts: { limit: string; json?: boolean }, cmd: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new CliError(ExitCode.Usage, `--limit must be a whole number, at least 1, got '${opts.limit}'`);
      await withConnection(cmd, async (conn) => {
        const controls = controlsOf(conn);
        await known(controls, name);
        const runs = await controls.history(name, limit);
        print(opts.json ? json(runs) : renderHistory(runs));
      });
    });
}

function print(text: string): void {
  process.stdout.write(text);
}

function json(value: unknown): string {
  return `${printableJson(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2))}\n`;
}

const iso = (d: Date | undefined) => (d ? d.toISOString() : '-');

function renderJobs(statuses: readonly JobStatus[]): string {
  if (statuses.length === 0) return 'No scheduled jobs.\n';
  const rows = statuses.map((s) => [
    s.name,
    s.schedule,
    iso(s.nextFireTime),
    s.paused ? 'paused' : s.running ? 'running' : 'idle',
    s.lastRun ? `${s.lastRun.outcome} (${iso(s.lastRun.fireTime)}${s.lastRun.identity ? ` on ${s.lastRun.identity}` : ''})` : '-',
  ]);
  return `${table(['job', 'schedule', 'next fire time', 'state', 'last run'], rows).join('\n')}\n`;
}

function renderHistory(runs: readonly JobRun[]): string {
  if (runs.length === 0) return 'No runs recorded.\n';
  const rows = runs.map((r) => [
    iso(r.fireTime),
    String(r.attempt),
    r.kind,
    r.outcome,
    r.identity ?? '-',
    r.startedAt && r.endedAt ? `${r.endedAt.getTime() - r.startedAt.getTime()} ms` : '-',
    r.fencingToken?.toString() ?? '-',
    r.error ?? '',
  ]);
  return `${table(['fire time', 'attempt', 'kind', 'outcome', 'replica', 'took', 'token', 'error'], rows).join('\n')}\n`;
}
