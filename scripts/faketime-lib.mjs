// @ts-check
import { existsSync } from 'node:fs';

/**
 * Where libfaketime is, or undefined: `FAKETIME_LIB`, else where Debian/Ubuntu (package `faketime`) and Homebrew
 * (`libfaketime`) put it. `scripts/ensure-etcd.mjs --faketime` installs it; the fault suite preloads it.
 * @returns {string | undefined}
 */
export function faketimeLib() {
  const candidates = [
    process.env.FAKETIME_LIB,
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/faketime/libfaketime.so.1',
    '/usr/local/lib/faketime/libfaketime.1.dylib',
    '/opt/homebrew/lib/faketime/libfaketime.1.dylib',
  ];
  return candidates.find((path) => path !== undefined && existsSync(path));
}
