import 'reflect-metadata';
import { type CanActivate, type ExecutionContext, Injectable, type INestApplication, Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { type Connection, connect } from '../lib/cli/connection.js';
import { type ServedDashboard, serveDashboard } from '../lib/cli/dashboard.js';
import { EtcdLockDashboardModule, EtcdLockModule, InvalidOptionsError, LockLostError, LockService } from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { pageToken, postAction, viewWhen } from './harness/dashboard.js';
import { useEtcd } from './harness/fixtures.js';

let conn: Connection | undefined;
let served: ServedDashboard | undefined;
const httpApps: INestApplication[] = [];
// Before the fixture's check that etcd is left clean: the page servers' watches end with them.
afterEach(async () => {
  await served?.close();
  conn?.close();
  served = undefined;
  conn = undefined;
  await Promise.all(httpApps.splice(0).map((app) => app.close()));
});
const etcd = useEtcd();
const PREFIX = 'dash/';
const replica = (identity: string) => etcd.app({ identity, prefix: PREFIX, ttl: 5 });

async function serve(actions: boolean): Promise<{ url: string; same: Record<string, string> }> {
  conn = connect({ endpoints: etcd.endpoint, prefix: PREFIX, commandTimeout: '5000' });
  served = await serveDashboard(conn, { port: 0, host: '127.0.0.1', actions });
  const url = served.url;
  return { url, same: { origin: new URL(url).origin, 'x-etcd-lock-dashboard-token': await pageToken(url) } };
}

describe('dashboard page server', () => {
  it('serves the page with a strict CSP and its assets, and streams a view of each change: a held lock, its waiters in order', async () => {
    const { url } = await serve(false);
    const page = await fetch(url);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(await page.text()).toContain('/assets/app.js');
    for (const asset of ['app.js', 'preact.js', 'hooks.js', 'htm.js']) {
      const res = await fetch(`${url}assets/${asset}`);
      expect([asset, res.status, res.headers.get('content-type')]).toEqual([asset, 200, 'text/javascript; charset=utf-8']);
    }
    expect((await fetch(`${url}assets/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${url}nothing`)).status).toBe(404);

    const [a, b, c] = await Promise.all([replica('a'), replica('b'), replica('c')]);
    const held = await a.get(LockService).acquire('orders');
    const second = b.get(LockService).acquire('orders');
    await etcd.waitForKeys(`${PREFIX}lock/orders/`, 2);
    const third = c.get(LockService).acquire('orders');
    const view = await viewWhen(`${url}events`, (v) => v.locks[0]?.waiters.length === 2);
    expect(view.locks.map((l) => [l.name, l.holder.value, l.holder.token, l.waiters.map((w) => w.value)])).toEqual([
      ['orders', 'a', held.fencingToken.toString(), ['b', 'c']],
    ]);
    expect(view.actions).toBe(false);
    expect(view.sessions.map((s) => s.identities[0]).sort()).toEqual(['a', 'b', 'c']);
    // Read-only: the action endpoint refuses, whatever the request carries.
    expect(
      (await postAction(`${url}actions`, { action: 'release', name: 'orders', token: '1' }, { origin: new URL(url).origin })).status,
    ).toBe(403);
    await held.release();
    await (await second).release();
    await (await third).release();
  });

  it('with actions: a release with the token shown hands the lock over; a stale token, no token, another origin and a bad body are refused', async () => {
    const { url, same } = await serve(true);
    const [a, b] = await Promise.all([replica('a'), replica('b')]);
    const held = await a.get(LockService).acquire('orders');
    const waiting = b.get(LockService).acquire('orders');
    await viewWhen(`${url}events`, (v) => v.locks[0]?.waiters.length === 1);
    const release = { action: 'release', name: 'orders', token: held.fencingToken.toString() };

    expect(await postAction(`${url}actions`, release, { origin: same.origin })).toMatchObject({ status: 403 });
    expect(await postAction(`${url}actions`, release, { ...same, origin: 'http://evil.example' })).toMatchObject({
      status: 403,
      message: "cross-origin request refused (origin 'http://evil.example')",
    });
    expect(await postAction(`${url}actions`, { ...release, token: 'x' }, same)).toMatchObject({ status: 400 });
    expect(await postAction(`${url}actions`, { action: 'drop', name: 'orders' }, same)).toMatchObject({ status: 400 });
    expect(await postAction(`${url}actions`, { ...release, token: String(held.fencingToken + 1n) }, same)).toMatchObject({ status: 409 });
    expect(held.signal.aborted).toBe(false);

    expect(await postAction(`${url}actions`, release, same)).toEqual({
      status: 200,
      message: `released lock 'orders' (token ${held.fencingToken}); next in line: 'b'`,
    });
    const next = await waiting;
    // The holder hears of its key's deletion on its own watch, not necessarily before the next holder does.
    await whenAborted(held.signal);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
    const view = await viewWhen(`${url}events`, (v) => v.locks[0]?.holder.value === 'b');
    expect(view.locks[0].holder.token).toBe(next.fencingToken.toString());
    await next.release();
  });

  it('one feed for every page: the watches start with the first page and stop after the last', async () => {
    const { url } = await serve(false);
    const a = await replica('a');
    const held = await a.get(LockService).acquire('shared');
    const streams = Array.from({ length: 5 }, () => viewWhen(`${url}events`, (v) => v.locks.some((l) => l.name === 'shared')));
    const views = await Promise.all(streams);
    // Every page got the same view, read once at one revision.
    expect(new Set(views.map((v) => v.revision)).size).toBe(1);
    await held.release();
    // The pages closed their streams: the feed has none left and stopped its watches.
    const feed = served?.server.feed;
    while (feed && feed.pages > 0) await new Promise((resolve) => setImmediate(resolve));
    expect(feed?.pages).toBe(0);
  });
});

/** An app's own authentication, here a header: the dashboard's routes run behind it. */
@Injectable()
class AdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
    return req.headers['x-admin'] === 'yes';
  }
}

/** An HTTP app with the dashboard mounted, as docs/dashboard.md shows it. */
function webModule(hosts: string): Type {
  @Module({
    imports: [
      EtcdLockModule.forRoot({ hosts, prefix: 'dash/', identity: 'web' }),
      EtcdLockDashboardModule.forRoot({ path: '/ops/locks', guards: [AdminGuard] }),
    ],
  })
  class WebModule {}
  return WebModule;
}

describe('EtcdLockDashboardModule in a Nest HTTP app', () => {
  for (const platform of ['express', 'fastify'] as const) {
    it(`on ${platform}: mounted at its path behind the app's guard, streams the view, read-only by default`, async () => {
      const WebModule = webModule(etcd.endpoint);
      const app =
        platform === 'express'
          ? await NestFactory.create(WebModule, { logger: false })
          : await NestFactory.create(WebModule, new FastifyAdapter(), { logger: false });
      httpApps.push(app);
      await app.listen(0, '127.0.0.1');
      const base = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/ops/locks`;
      const admin = { 'x-admin': 'yes' };
      expect((await fetch(base)).status).toBe(403);
      const page = await fetch(base, { headers: admin });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self' 'sha256-");
      expect(await page.text()).toContain('/ops/locks/assets/app.js');
      const asset = await fetch(`${base}/assets/htm.js`, { headers: admin });
      expect([asset.status, asset.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);

      const held = await app.get(LockService).acquire('nightly');
      const view = await viewWhen(`${base}/events`, (v) => v.locks.some((l) => l.name === 'nightly'), admin);
      expect(view.locks[0].holder.value).toBe('web');
      const token = /name="etcd-lock-token" content="([0-9a-f]+)"/.exec(
        await (await fetch(base, { headers: admin })).text(),
      )?.[1] as string;
      const refused = await postAction(
        `${base}/actions`,
        { action: 'release', name: 'nightly', token: held.fencingToken.toString() },
        {
          ...admin,
          'x-etcd-lock-dashboard-token': token,
        },
      );
      expect(refused.status).toBe(403);
      expect(held.signal.aborted).toBe(false);
      await held.release();
    });
  }

  it('refuses a bad mount path with a typed error naming it', () => {
    expect(() => EtcdLockDashboardModule.forRoot({ path: '/x"><script>' })).toThrow(InvalidOptionsError);
    expect(() => EtcdLockDashboardModule.forRoot({ path: 'no-slash' })).toThrow(/dashboard\.path/);
  });
});
