#!/usr/bin/env node
// @ts-check
/**
 * The one place that provides etcd (and openssl, which the TLS tests use, libfaketime, which the fault suite's
 * clock-skew scenario uses, and Chromium, which the dashboard's browser tests drive) for `npm test`, `npm run test:faults`, `npm run demo`, `npm run bench` and `.ci/run`.
 * Plain JavaScript so that it runs before anything is built.
 *
 *   node scripts/ensure-etcd.mjs            etcd is required: install it if we can, else exit 1 with the commands
 *   node scripts/ensure-etcd.mjs --optional etcd is wanted: install it if we can, else say so and exit 0
 *   node scripts/ensure-etcd.mjs --openssl  also require openssl
 *   node scripts/ensure-etcd.mjs --faketime also require libfaketime (Debian's `faketime`; `FAKETIME_LIB` names it)
 *   node scripts/ensure-etcd.mjs --chromium also require Chromium (Debian's `chromium`; `CHROMIUM_BIN` names it)
 *
 * Order: `ETCD_BIN`/`ETCDCTL_BIN` or `etcd`/`etcdctl` on PATH; else, unless `ETCD_INSTALL=never`, apt-get on
 * Debian/Ubuntu (as root or with passwordless sudo) or Homebrew on macOS, printing the command first.
 */
import { spawnSync } from 'node:child_process';
import { platform } from 'node:process';
import { faketimeLib } from './faketime-lib.mjs';
import { chromiumBin } from './chromium-bin.mjs';

const args = new Set(process.argv.slice(2));
const optional = args.has('--optional');
const needOpenssl = args.has('--openssl');
const needFaketime = args.has('--faketime');
const needChromium = args.has('--chromium');
const installAllowed = process.env.ETCD_INSTALL !== 'never';

const MANUAL = [
  '  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y etcd-server etcd-client',
  '  Fedora/RHEL:   sudo dnf install -y etcd',
  '  macOS:         brew install etcd',
  '  Anywhere:      put the etcd 3.4+ release binaries on PATH, or set ETCD_BIN and ETCDCTL_BIN to them',
].join('\n');

/** True when `bin <versionArgs>` runs. */
function runs(bin, versionArgs = ['--version']) {
  const result = spawnSync(bin, versionArgs, { stdio: 'ignore' });
  return result.status === 0;
}

function haveEtcd() {
  return runs(process.env.ETCD_BIN ?? 'etcd') && runs(process.env.ETCDCTL_BIN ?? 'etcdctl', ['version']);
}

/** Runs a command with its output shown, after printing it. */
function run(command) {
  console.error(`ensure-etcd: running: ${command.join(' ')}`);
  return spawnSync(command[0], command.slice(1), { stdio: 'inherit' }).status === 0;
}

/** The installer for this machine, as a list of commands, or undefined when we know none we may run. */
function installer(aptPackages, brewPackages) {
  if (platform === 'linux' && runs('apt-get')) {
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    const sudo = isRoot ? [] : spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0 ? ['sudo', '-n'] : undefined;
    if (!sudo) return undefined;
    return [
      [...sudo, 'apt-get', 'update'],
      [...sudo, 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', ...aptPackages],
    ];
  }
  if (platform === 'darwin' && runs('brew')) return [['brew', 'install', ...brewPackages]];
  return undefined;
}

function install(what, aptPackages, brewPackages) {
  if (!installAllowed) return false;
  const commands = installer(aptPackages, brewPackages);
  if (!commands) return false;
  console.error(`ensure-etcd: ${what} is missing; installing it`);
  return commands.every(run);
}

let ok = true;
if (!haveEtcd()) {
  const where = process.env.ETCD_BIN ? `ETCD_BIN=${process.env.ETCD_BIN}` : 'etcd/etcdctl on PATH';
  if (process.env.ETCD_BIN || process.env.ETCDCTL_BIN || !install('etcd', ['etcd-server', 'etcd-client'], ['etcd']) || !haveEtcd()) {
    const why =
      process.env.ETCD_BIN || process.env.ETCDCTL_BIN
        ? 'and an explicit ETCD_BIN/ETCDCTL_BIN is never replaced by an install'
        : installAllowed
          ? 'and it could not be installed here (no apt-get with root or passwordless sudo, no Homebrew)'
          : 'and ETCD_INSTALL=never forbids installing it';
    const next = optional ? 'Going on without it. ' : '';
    console.error(`ensure-etcd: no etcd found (${where}), ${why}. ${next}Install etcd 3.4+:\n${MANUAL}`);
    ok = false;
  }
}
if (ok) {
  const version = spawnSync(process.env.ETCD_BIN ?? 'etcd', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  console.error(`ensure-etcd: ${version}`);
}
if (ok && needOpenssl && !runs('openssl', ['version']) && !(install('openssl', ['openssl'], ['openssl']) && runs('openssl', ['version']))) {
  console.error('ensure-etcd: the TLS tests need openssl; install it (apt-get install openssl, brew install openssl).');
  ok = false;
}
if (ok && needFaketime && !faketimeLib() && !(install('libfaketime', ['faketime'], ['libfaketime']) && faketimeLib())) {
  console.error(
    'ensure-etcd: the clock-skew scenario needs libfaketime; install it (apt-get install faketime, brew install libfaketime), or set FAKETIME_LIB to libfaketime.so.1.',
  );
  ok = false;
}
if (ok && needChromium && !chromiumBin() && !(install('Chromium', ['chromium'], ['--cask', 'chromium']) && chromiumBin())) {
  console.error(
    "ensure-etcd: the dashboard's browser tests need Chromium; install it (apt-get install chromium, brew install --cask chromium), or set CHROMIUM_BIN to its executable.",
  );
  ok = false;
}
if (ok && needChromium) console.error(`ensure-etcd: Chromium at ${chromiumBin()}`);
process.exit(ok || optional ? 0 : 1);
