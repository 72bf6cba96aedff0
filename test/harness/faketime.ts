import { rmSync } from 'node:fs';
import { faketimeLib } from '../../scripts/faketime-lib.mjs';

/**
 * The environment that shifts a process's wall clock by `offsetMs` (libfaketime, preloaded), leaving its monotonic
 * clock alone: `Date` and the cron schedule see the skewed time; timers and deadlines run as they do.
 */
export function skewedClock(offsetMs: number): NodeJS.ProcessEnv {
  const lib = faketimeLib();
  if (!lib) throw new Error('libfaketime is missing: run `node scripts/ensure-etcd.mjs --faketime` (npm run test:faults does)');
  const seconds = (Math.abs(offsetMs) / 1000).toFixed(3);
  return {
    LD_PRELOAD: lib,
    DYLD_INSERT_LIBRARIES: lib,
    FAKETIME: `${offsetMs < 0 ? '-' : '+'}${seconds}s`,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
    FAKETIME_DONT_RESET: '1',
  };
}

/**
 * Removes what libfaketime keeps in `/dev/shm` for process `pid` (a shared-memory segment and a semaphore, named by
 * the pid). It removes them itself when the process exits, but not when the process is killed, as the nemesis
 * does: each killed replica left two files behind, and every fault run added some twenty.
 */
export function forgetFaketimeState(pid: number | undefined): void {
  if (pid === undefined) return;
  for (const name of [`faketime_shm_${pid}`, `sem.faketime_sem_${pid}`]) rmSync(`/dev/shm/${name}`, { force: true });
}
