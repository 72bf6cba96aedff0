import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** etcd made unavailable, and installing it forbidden: what a machine without etcd (and without root) gets. */
const NO_ETCD = { ...process.env, ETCD_BIN: '/nonexistent/etcd', ETCDCTL_BIN: '/nonexistent/etcdctl', ETCD_INSTALL: 'never' };

describe('set-up without etcd', () => {
  it('ensure-etcd stops the tests before they start, naming the commands that install etcd', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'ensure-etcd.mjs')], { env: NO_ETCD, encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('no etcd found (ETCD_BIN=/nonexistent/etcd)');
    expect(run.stderr).toContain('apt-get install -y etcd-server etcd-client');
    expect(run.stderr).toContain('brew install etcd');
  });

  it('for the demo (--optional) it says so and lets it go on', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'ensure-etcd.mjs'), '--optional'], { env: NO_ETCD, encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('Going on without it');
  });

  it('the demo runs its whole scenario on the in-memory etcd and prints the same summary', async () => {
    // Where etcd's data would go: the demo tries etcd first, and must leave nothing when it finds none.
    const scratch = mkdtempSync(join(tmpdir(), 'demo-scratch-'));
    const child = spawn(process.execPath, [join(ROOT, 'build', 'scripts', 'demo', 'main.js'), '--duration', '12'], {
      env: { ...NO_ETCD, NO_COLOR: '1', NESTJS_ETCD_LOCK_SCRATCH: scratch },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    // A demo that hangs must not outlive the test (jest would never exit).
    const guard = setTimeout(() => child.kill('SIGKILL'), 55_000);
    const code = await new Promise((resolve) => child.once('exit', resolve));
    clearTimeout(guard);
    const leftInScratch = readdirSync(scratch);
    rmSync(scratch, { recursive: true, force: true });
    expect(leftInScratch).toEqual([]);
    const lines = output.split('\n');
    expect(lines[0]).toMatch(/^No etcd binary here: this demo runs on the in-memory etcd .*`npm run demo` again\.$/);
    expect(code).toBe(0);
    // Both failovers happened, each to another replica, and the tables are there.
    expect(output).toMatch(/\| graceful stop \| replica-\d +\| replica-\d +\| \d+ ms/);
    expect(output).toMatch(/\| crash +\| replica-\d +\| replica-\d +\| \d+ ms/);
    expect(output).toContain('Summary (in-memory etcd)');
    expect(output).toMatch(/\| failed +\| 0 +\|/);
    expect(output).toContain('no money lost or created');
    // The scheduled heartbeat: every fire time of the run, once, across the graceful stop and the crash.
    const summary = output.match(/\nHeartbeat: (\d+) fire times from [\d:]+ to [\d:]+; \1 ran once, 0 lost, 0 ran twice/);
    expect(summary).not.toBeNull();
    // ...and each of them shown, in order, by who ran it and how: nothing lost (·) or doubled (!).
    const timeline = output.match(/\n {2}[\d:]+ ([123rcm]+) [\d:]+\n/);
    expect(timeline?.[1]).toHaveLength(Number(summary?.[1]));
    // Tenant shards: all 16 owned, spread over the live replicas, at start and after each stop.
    expect(output).toMatch(/tenant shards at start: replica-\d \d+, replica-\d \d+, replica-\d \d+/);
    expect(output).toMatch(/tenant shards after the graceful stop: replica-\d 8, replica-\d 8/);
    expect(output).toMatch(/tenant shards after the crash: replica-\d 16/);
    expect(output).toMatch(/\| tenant shards \(16\) \| at start +\| after the graceful stop \| after the crash/);
    // The lines of each replica carry its own label: a leadership line names the replica that prints it.
    const gained = [
      ...output.matchAll(/\[(replica-\d)\]\S* LOG \[EtcdLock\] Leadership gained in election 'leader' \((replica-\d), term \d+\)/g),
    ];
    expect(gained.length).toBeGreaterThanOrEqual(3); // the first leader and the two failovers
    for (const [, printer, leader] of gained) expect(printer).toBe(leader);
    // A story, not a log dump: none of Nest's start-up lines, one shard line per replica and rebalance (at start,
    // the graceful stop, the crash, the final stop: at most 4 for each of the 3 replicas, where one line per shard
    // moved made 57), and no warning before the crash (the graceful stop warns of nothing).
    expect(output).not.toMatch(/\[(RoutesResolver|RouterExplorer|InstanceLoader)\]/);
    expect(lines.filter((line) => line.includes("Shards of group 'tenants'")).length).toBeLessThanOrEqual(12);
    const beforeCrash = output.slice(0, output.indexOf('crash:'));
    expect(beforeCrash.split('\n').filter((line) => / (WARN|ERROR) /.test(line))).toEqual([]);
  }, 60_000);
});
