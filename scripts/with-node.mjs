#!/usr/bin/env node
// Runs a command under another Node major: `node scripts/with-node.mjs 22 npm test`.
// The official Node binaries come from the registry as packages (node-<platform>-<arch>@<major>), installed once
// into a cache folder (never over the system Node) and put first on PATH for the command and its children.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const [major, ...command] = process.argv.slice(2);
if (!/^\d+$/.test(major ?? '') || command.length === 0) {
  console.error('usage: node scripts/with-node.mjs <major> <command> [args...]');
  process.exit(2);
}
const pkg = `node-${process.platform}-${process.arch}`;
const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'nestjs-etcd-lock', `node-${major}`);
const bin = join(cache, 'node_modules', pkg, 'bin');

if (!existsSync(join(bin, 'node'))) {
  mkdirSync(cache, { recursive: true });
  console.error(`with-node: installing ${pkg}@${major} into ${cache}`);
  execFileSync('npm', ['install', '--prefix', cache, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `${pkg}@${major}`], {
    stdio: 'inherit',
  });
}
const version = execFileSync(join(bin, 'node'), ['--version'], { encoding: 'utf8' }).trim();
if (!version.startsWith(`v${major}.`)) {
  console.error(`with-node: ${join(bin, 'node')} is ${version}, not Node ${major}`);
  process.exit(1);
}
console.error(`with-node: running \`${command.join(' ')}\` on Node ${version}`);
const result = spawnSync(command[0], command.slice(1), {
  stdio: 'inherit',
  env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
});
process.exit(result.status ?? 1);
