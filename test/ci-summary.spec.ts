import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './harness/processes.js';
import { EtcdServer } from './harness/etcd.js';

/** `.ci/run` prints what failed above its last line, from jest's JSON results (or its log, if the run was killed). */
describe('.ci/run: what failed', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ci-summary-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const summary = (results: object | undefined, log: string, files: string[]) => {
    if (results) writeFileSync(join(dir, 'results.json'), JSON.stringify(results));
    writeFileSync(join(dir, 'log'), log);
    writeFileSync(join(dir, 'list'), files.map((f) => join(ROOT, f)).join('\n'));
    return execFileSync(process.execPath, ['scripts/jest-summary.mjs', join(dir, 'results.json'), join(dir, 'log'), join(dir, 'list')], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim();
  };
  const files = ['test/a.spec.ts', 'test/b.spec.ts', 'test/c.spec.ts'];

  it('names failing tests, timed-out tests, suites that failed to run, and suites that never finished', () => {
    const results = {
      testResults: [
        {
          name: join(ROOT, 'test/a.spec.ts'),
          status: 'failed',
          message: '',
          assertionResults: [
            { status: 'passed', fullName: 'fine', failureMessages: [] },
            { status: 'failed', fullName: 'scenario 9', failureMessages: ['thrown: "Exceeded timeout of 60000 ms for a test.'] },
          ],
        },
        { name: join(ROOT, 'test/b.spec.ts'), status: 'failed', message: '  ● Test suite failed to run', assertionResults: [] },
      ],
    };
    expect(summary(results, '', files).split('\n')).toEqual([
      'counts 1 3',
      'FAILED  test/a.spec.ts › scenario 9 (timed out)',
      'FAILED  test/b.spec.ts (suite: ● Test suite failed to run)',
      'TIMED OUT  test/c.spec.ts (never finished: the run was stopped)',
    ]);
  });

  it('without results (the run was stopped), counts the suites its log says finished', () => {
    expect(summary(undefined, 'PASS test/a.spec.ts (3 s)\nFAIL test/b.spec.ts\n', files).split('\n')).toEqual([
      'counts 0 1',
      'TIMED OUT  test/c.spec.ts (never finished: the run was stopped)',
    ]);
  });
});

describe('.ci/run: etcd processes left running', () => {
  const runEtcds = (scratch: string) =>
    execFileSync('bash', ['scripts/etcd-of-run.sh', scratch], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);

  it('counts only the etcd processes of this run (under its scratch directory), not one the machine runs', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'ci-scratch-'));
    const before = process.env.NESTJS_ETCD_LOCK_SCRATCH;
    process.env.NESTJS_ETCD_LOCK_SCRATCH = scratch;
    const ours = await EtcdServer.start().finally(() => {
      if (before === undefined) delete process.env.NESTJS_ETCD_LOCK_SCRATCH;
      else process.env.NESTJS_ETCD_LOCK_SCRATCH = before;
    });
    // An etcd of the machine's own: elsewhere.
    const machines = await EtcdServer.start();
    try {
      expect(runEtcds(scratch)).toHaveLength(1);
      await ours.destroy();
      expect(runEtcds(scratch)).toEqual([]);
    } finally {
      await ours.destroy();
      await machines.destroy();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
