import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder up with a package.json (from `test/harness/` or its build in `build/`). */
export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

const running = new Set<NodeProcess>();

/** Kills every child process still running (called after each test, so a failed test leaks none). */
export async function killAll(): Promise<void> {
  const all = [...running];
  // A process that should have been closed by its test is left by a test that failed or hung: show what it said.
  for (const p of all.filter((p) => p.showIfLeft)) {
    console.log(`${p.script} was still running after the test; its last lines:\n${p.lines.slice(-30).join('\n')}`);
  }
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}

/** A Node child process whose stdout is read line by line. */
export class NodeProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  /** The exit code, or the signal that ended the process. */
  readonly exited: Promise<number | NodeJS.Signals | null>;
  private waiters: Array<() => void> = [];
  /** Whether its test closes it: if it still runs when the test is over, its lines are printed (see `killAll`). */
  showIfLeft = false;

  constructor(
    readonly script: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    /** Told once the process has exited, however it ended (to remove what it could not, if killed). */
    onExit?: (pid: number | undefined) => void,
  ) {
    if (!existsSync(join(ROOT, 'dist', 'index.js'))) {
      throw new Error('dist/ is missing: run `npm run build` first (`npm test` does it for you)');
    }
    this.child = spawn(process.execPath, [resolve(ROOT, script), ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      this.lines.push(...parts);
      for (const wake of this.waiters.splice(0)) wake();
    });
    running.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        running.delete(this);
        onExit?.(this.child.pid);
        resolve(code ?? signal);
      }),
    );
  }

  /** Resolves with the first line (at or after `from`) that matches. */
  async line(match: (line: string) => boolean, from = 0): Promise<string> {
    for (;;) {
      const found = this.lines.slice(from).find(match);
      if (found !== undefined) return found;
      const exited = await Promise.race([
        new Promise<false>((resolve) => this.waiters.push(() => resolve(false))),
        this.exited.then(() => true),
      ]);
      if (exited && !this.lines.slice(from).some(match)) throw new Error('process exited before the expected line');
    }
  }

  send(text: string): void {
    this.child.stdin?.write(`${text}\n`);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}
