import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './processes.js';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const BIN = join(ROOT, 'dist', 'cli', 'main.js');

/** The built CLI as its own process (as `npx nestjs-etcd-lock` runs it); `input` is written to its stdin, then closed. */
export function runCli(args: readonly string[], input = '', env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = spawnCli(args, env);
  child.stdin?.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The CLI with its stdio piped, for `--watch`. */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  // No ETCDCTL_* from the developer's shell: each test names what it connects with.
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('ETCDCTL_') && k !== 'NESTJS_ETCD_LOCK_PREFIX'),
  );
  return spawn(process.execPath, [BIN, ...args], { env: { ...clean, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
}
