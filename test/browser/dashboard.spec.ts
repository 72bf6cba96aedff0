/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { type Connection, connect } from '../../lib/cli/connection.js';
import { type ServedDashboard, serveDashboard } from '../../lib/cli/dashboard.js';
import { LockLostError, LockService } from '../../lib/index.js';
import { whenAborted } from '../../lib/util/wait-signal.js';
import { launchChromium } from '../harness/browser.js';
import { freePort } from '../harness/etcd.js';
import { useEtcd } from '../harness/fixtures.js';
import { ROOT } from '../harness/processes.js';
import { SampleReplica } from '../harness/sample-replica.js';

/** Screenshots for docs/dashboard.md, taken by these tests. */
const SHOTS = join(ROOT, 'docs', 'images');
const PREFIX = 'sample/';

let browser: Browser | undefined;
let conn: Connection | undefined;
let served: ServedDashboard | undefined;
const replicas: SampleReplica[] = [];
const pages: Page[] = [];
// Before the fixture's check that etcd is left clean: replicas stopped (they resign and revoke), the page server
// closed, and the sample app's own data (accounts, feed, job records: keys without a lease) deleted.
afterEach(async () => {
  await Promise.all(pages.splice(0).map((p) => p.close()));
  await Promise.all(replicas.splice(0).map((r) => r.stop()));
  await served?.close();
  conn?.close();
  served = undefined;
  conn = undefined;
  await etcd.client.delete().prefix(PREFIX);
});
const etcd = useEtcd();

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'sample-app', 'dist', 'main.js'))) throw new Error('run `npm run build:sample` first');
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

async function startReplicas(ids: string[]): Promise<SampleReplica[]> {
  const started = await Promise.all(ids.map(async (id) => new SampleReplica(etcd.endpoint, id, await freePort())));
  replicas.push(...started);
  await Promise.all(started.map((r) => r.ready()));
  return started;
}

async function openDashboard(actions: boolean): Promise<Page> {
  conn = connect({ endpoints: etcd.endpoint, prefix: PREFIX, commandTimeout: '5000' });
  served = await serveDashboard(conn, { port: 0, host: '127.0.0.1', actions });
  const page = await (browser as Browser).newPage({ viewport: { width: 1360, height: 900 } });
  pages.push(page);
  page.on('pageerror', (err) => {
    throw err;
  });
  await page.goto(served.url);
  await page.locator('[data-live="true"]').waitFor();
  return page;
}

const leaderOf = (page: Page) => page.locator('[data-election="leader"] [data-leader] .who').textContent();

describe('the dashboard in Chromium', () => {
  it('shows the leader, a lock with its waiters in order, escaped names, the shard grid; a stopped leader’s successor and term within 1 s', async () => {
    await startReplicas(['r1', 'r2', 'r3']);
    const page = await openDashboard(false);
    // A lock held by an operator's app, two waiting behind it; its name and holder are HTML that must stay text.
    const name = '<img src=x onerror=window.__xss=1>';
    const [ops, w1, w2] = await Promise.all(
      ['<b>ops</b>', 'w1', 'w2'].map((identity) => etcd.app({ hosts: etcd.endpoint, prefix: PREFIX, identity, ttl: 60 })),
    );
    const held = await ops.get(LockService).acquire(name);
    const first = w1.get(LockService).acquire(name);
    await etcd.waitForKeys(`${PREFIX}lock/${name}/`, 2);
    const second = w2.get(LockService).acquire(name);

    const row = page.locator(`tr[data-lock="${name}"]`);
    await row.locator('[data-waiter="w2"]').waitFor();
    expect(await row.locator('.name').textContent()).toBe(name);
    expect(await row.locator('.who').first().textContent()).toBe('<b>ops</b>');
    expect(await row.locator('[data-waiter]').evaluateAll((els) => els.map((e) => e.getAttribute('data-waiter')))).toEqual(['w1', 'w2']);
    expect(await page.locator('main img').count()).toBe(0);
    expect(await page.locator('main b', { hasText: 'ops' }).count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    // Read-only: no action is offered.
    expect(await page.locator('button.action').count()).toBe(0);

    // The leader and one term; the shard grid with every replica.
    const leader = (await leaderOf(page)) as string;
    expect(['r1', 'r2', 'r3']).toContain(leader);
    const terms = page.locator('[data-election="leader"] rect[data-term]');
    expect(await terms.count()).toBe(1);
    const grid = page.locator('[data-group="tenants"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-group="tenants"] tr[data-member]').length === 3);
    const shards = (await grid.locator('thead th').count()) - 1;
    expect(await grid.locator('td.owned').count()).toBe(shards);
    await page.screenshot({ path: join(SHOTS, 'dashboard-overview.png'), fullPage: true });
    await page.locator('#locks').screenshot({ path: join(SHOTS, 'dashboard-locks.png') });

    // SIGTERM to the leader: it resigns; etcd deletes its key; the page shows the next leader and a second term.
    const watcher = await etcd.client.watch().prefix(`${PREFIX}election/leader/`).create();
    const deleted = new Promise<number>((resolve) => watcher.once('delete', () => resolve(Date.now())));
    // The page notes when it shows another leader (a DOM change, in the page's own time): the test's polling of
    // the page must not count.
    await page.evaluate((old) => {
      const shown = window as unknown as { leaderShownAt?: Promise<number> };
      shown.leaderShownAt = new Promise((resolve) => {
        const observer = new MutationObserver(() => {
          const el = document.querySelector('[data-election="leader"] [data-leader] .who');
          if (el === null || el.textContent === old) return;
          observer.disconnect();
          resolve(Date.now());
        });
        observer.observe(document.body, { subtree: true, childList: true, characterData: true });
      });
    }, leader);
    await replicas.find((r) => r.identity === leader)?.stop();
    const deletedAt = await deleted;
    const shownAt = await page.evaluate(() => (window as unknown as { leaderShownAt: Promise<number> }).leaderShownAt);
    await watcher.cancel();
    console.log(`dashboard: the new leader shown ${shownAt - deletedAt} ms after etcd deleted the old leader's key`);
    expect(shownAt - deletedAt).toBeLessThan(1000);
    expect(await terms.count()).toBe(2);
    expect(await leaderOf(page)).not.toBe(leader);
    await page.locator('[data-election="leader"]').screenshot({ path: join(SHOTS, 'dashboard-elections.png') });

    // Its shards move to the two left: the grid loses its row, every shard still owned.
    await page.waitForFunction((gone) => !document.querySelector(`[data-group="tenants"] tr[data-member="${gone}"]`), leader);
    await page.waitForFunction((n) => document.querySelectorAll('[data-group="tenants"] td.owned').length === n, shards);
    expect(await grid.locator('tr[data-member]').count()).toBe(2);
    await grid.screenshot({ path: join(SHOTS, 'dashboard-shards.png') });
    await page.locator('#sessions').screenshot({ path: join(SHOTS, 'dashboard-sessions.png') });

    await held.release();
    await (await first).release();
    await (await second).release();
    await page.close();
  });

  it('with actions: releasing a lock from the page hands it over, a job is paused and resumed; another origin cannot act', async () => {
    await startReplicas(['r1']);
    const page = await openDashboard(true);
    page.on('dialog', (dialog) => void dialog.accept());
    const [ops, w1] = await Promise.all(
      ['ops', 'w1'].map((identity) => etcd.app({ hosts: etcd.endpoint, prefix: PREFIX, identity, ttl: 60 })),
    );
    const held = await ops.get(LockService).acquire('nightly-report');
    const waiting = w1.get(LockService).acquire('nightly-report');
    await page.locator('tr[data-lock="nightly-report"] [data-waiter="w1"]').waitFor();

    // Another origin: the browser refuses to send the action (no CORS grant), and a form-like post has no token.
    const other = createServer((_, res) => res.end('<!doctype html><title>elsewhere</title>'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const elsewhere = await (browser as Browser).newPage();
    await elsewhere.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`);
    const token = await page.locator('meta[name="etcd-lock-token"]').getAttribute('content');
    const actions = `${served?.url}actions`;
    const body = JSON.stringify({ action: 'release', name: 'nightly-report', token: held.fencingToken.toString() });
    const outcome = await elsewhere.evaluate(
      async ([url, json, t]) => {
        const withToken = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-etcd-lock-dashboard-token': t },
          body: json,
        }).then(
          (r) => `answered ${r.status}`,
          () => 'blocked',
        );
        await fetch(url, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: json });
        return withToken;
      },
      [actions, body, token as string] as const,
    );
    expect(outcome).toBe('blocked');
    await elsewhere.close();
    other.close();
    expect(held.signal.aborted).toBe(false);

    await page.locator('tr[data-lock="nightly-report"] .action[data-action="release"]').waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-actions.png'), fullPage: true });
    await page.locator('tr[data-lock="nightly-report"] .action[data-action="release"]').click();
    const next = await waiting;
    // The holder hears of its key's deletion on its own watch, not necessarily before the next holder does.
    await whenAborted(held.signal);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
    await page.waitForFunction(() => document.querySelector('tr[data-lock="nightly-report"] .who')?.textContent === 'w1');
    expect(await page.locator('[data-toast]').textContent()).toContain("released lock 'nightly-report'");

    const job = page.locator('tr[data-job="heartbeat"]');
    await job.locator('.action[data-action="pause"]').click();
    await job.locator('.warn', { hasText: 'paused' }).waitFor();
    await page.locator('#jobs').screenshot({ path: join(SHOTS, 'dashboard-jobs.png') });
    await job.locator('.action[data-action="resume"]').click();
    await job.locator('.action[data-action="pause"]').waitFor();

    await next.release();
    await page.close();
  });
});
