// @ts-check
import { spawnSync } from 'node:child_process';

/**
 * Where a Chromium that runs is, or undefined: `CHROMIUM_BIN`, else where Debian/Ubuntu (package `chromium`) and
 * Homebrew put it. `scripts/ensure-etcd.mjs --chromium` installs it; the dashboard's browser tests launch it.
 * @returns {string | undefined}
 */
export function chromiumBin() {
  const candidates = [
    process.env.CHROMIUM_BIN,
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/Applications/Chromium.app/Contents/MacOS/Chromium',
  ];
  return candidates.find((path) => path !== undefined && spawnSync(path, ['--version'], { stdio: 'ignore' }).status === 0);
}
