import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock/clock.js';
import { EtcdUnavailableError, InvalidOptionsError, UnknownJobError } from '../errors.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { JobControls } from '../scheduling/job-controls.js';
import { messageOf } from '../util/error-message.js';
import { type ActionResult, parseAction, performAction } from './dashboard-actions.js';
import { type DashboardAsset, dashboardAsset, dashboardPage } from './dashboard-assets.js';
import { DashboardFeed, type FeedMessage } from './dashboard-feed.js';

/** The header that carries the page's token on every action. */
export const TOKEN_HEADER = 'x-etcd-lock-dashboard-token';
/** Security headers of every answer. */
const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' };
/** A comment line to every page this often, so that proxies keep the stream open (no etcd request). */
const KEEPALIVE_MS = 15_000;
const MAX_BODY_BYTES = 16 * 1024;

/** Where the page server reads, and what it lets the page do. */
export interface DashboardServerOptions {
  readonly rpc: EtcdPort;
  readonly prefix: string;
  readonly endpoints: readonly string[];
  /** Offer and accept actions (release, resign, pause, resume, trigger). Off: the action endpoint answers 403. */
  readonly actions: boolean;
  /** Where the page is mounted: `''` (the root) or `/path`. */
  readonly basePath: string;
  /** Who acts, as recorded with a job's pause or trigger. */
  readonly by: string;
  readonly clock: Clock;
}

/** A request to the action endpoint, as any HTTP framework hands it over. */
export interface ActionRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
}

/** `''` for the root, else a path of `/`-separated segments of letters, digits, `-`, `_`, `.`; a message if not. */
export function mountPathProblem(path: string): string | undefined {
  if (path === '' || /^(\/[A-Za-z0-9._-]+)+$/.test(path)) return undefined;
  return `must be '' or a path like '/etcd-lock' (segments of letters, digits, '-', '_', '.'), got '${path}'`;
}

/**
 * The dashboard, whatever serves it (the CLI's HTTP server, or a Nest controller on Express or Fastify): the page,
 * its assets, the live stream of views (server-sent events) and the actions. One feed (one set of etcd watches)
 * however many pages are open. Actions need the page's token in `x-etcd-lock-dashboard-token` and, when the
 * browser names an origin, the same origin as the page: a cross-site form or script cannot act.
 */
export class DashboardServer {
  readonly feed: DashboardFeed;
  private readonly token = randomBytes(32).toString('hex');
  private readonly jobs: JobControls;

  constructor(private readonly options: DashboardServerOptions) {
    const problem = mountPathProblem(options.basePath);
    if (problem) throw new InvalidOptionsError('dashboard.path', problem);
    this.jobs = new JobControls(options.rpc, options.prefix, options.by, options.clock);
    this.feed = new DashboardFeed(options.rpc, this.jobs, {
      prefix: options.prefix,
      endpoints: options.endpoints,
      actions: options.actions,
      clock: options.clock,
    });
  }

  /** The page's HTML, and the headers to send with it. */
  page(): { html: string; headers: Record<string, string> } {
    const { html, csp } = dashboardPage(this.options.basePath, this.token);
    return { html, headers: { ...COMMON_HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp } };
  }

  asset(name: string): DashboardAsset | undefined {
    return dashboardAsset(name);
  }

  /** Sends each view to `send` as one server-sent event's data (JSON), until the returned function is called. */
  stream(send: (data: string) => void, comment: () => void): () => void {
    const unsubscribe = this.feed.subscribe((message: FeedMessage) => send(JSON.stringify(message)));
    const keepalive = setInterval(comment, KEEPALIVE_MS);
    keepalive.unref();
    return () => {
      clearInterval(keepalive);
      unsubscribe();
    };
  }

  /** Checks and performs an action; refusals are 403 (actions off, no token, wrong origin) or 400 (bad body). */
  async act(req: ActionRequest): Promise<ActionResult> {
    if (!this.options.actions) return { status: 403, message: 'actions are disabled on this dashboard (start it with actions enabled)' };
    const refusal = this.refusal(req.headers);
    if (refusal) return { status: 403, message: refusal };
    const action = parseAction(req.body);
    if (typeof action === 'string') return { status: 400, message: action };
    try {
      return await performAction(this.options.rpc, this.options.prefix, this.jobs, action);
    } catch (err) {
      if (err instanceof UnknownJobError) return { status: 404, message: err.message };
      if (err instanceof EtcdUnavailableError) return { status: 503, message: err.message };
      return { status: 500, message: messageOf(err) };
    }
  }

  /**
   * Node's own HTTP handler (the CLI serves with it): `/`, `/assets/<file>`, `/events`, `POST /actions`, under
   * `basePath`. Anything else is 404.
   */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const base = this.options.basePath;
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const sub = path === base || path === `${base}/` ? '/' : path.startsWith(`${base}/`) ? path.slice(base.length) : undefined;
    const answer = (status: number, body: string | Buffer, headers: Record<string, string>) => {
      res.writeHead(status, { ...COMMON_HEADERS, ...headers });
      res.end(body);
    };
    if (req.method === 'GET' && sub === '/') {
      const { html, headers } = this.page();
      return answer(200, html, headers);
    }
    if (req.method === 'GET' && sub?.startsWith('/assets/')) {
      const asset = this.asset(sub.slice('/assets/'.length));
      return asset ? answer(200, asset.body, { 'content-type': asset.type }) : answer(404, 'not found', { 'content-type': 'text/plain' });
    }
    if (req.method === 'GET' && sub === '/events') {
      res.writeHead(200, { ...COMMON_HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
      res.flushHeaders();
      const stop = this.stream(
        (data) => res.write(`data: ${data}\n\n`),
        () => res.write(': keepalive\n\n'),
      );
      req.once('close', stop);
      return;
    }
    if (req.method === 'POST' && sub === '/actions') {
      const body = await readJson(req);
      const result =
        body === undefined
          ? { status: 400, message: 'the body must be JSON (at most 16 KiB)' }
          : await this.act({ headers: req.headers, body: body.value });
      return answer(result.status, JSON.stringify(result), { 'content-type': 'application/json' });
    }
    answer(404, 'not found', { 'content-type': 'text/plain' });
  }

  /** Stops the feed's watches. */
  close(): Promise<void> {
    return this.feed.stop();
  }

  private refusal(headers: ActionRequest['headers']): string | undefined {
    const sent = headers[TOKEN_HEADER];
    const given = Buffer.from(typeof sent === 'string' ? sent : '');
    const expected = Buffer.from(this.token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return `missing or wrong ${TOKEN_HEADER} header`;
    const origin = headers.origin;
    const host = headers.host;
    if (typeof origin === 'string' && origin !== 'null') {
      let originHost: string;
      try {
        originHost = new URL(origin).host;
      } catch {
        return `cross-origin request refused (origin '${origin}')`;
      }
      if (originHost !== host) return `cross-origin request refused (origin '${origin}')`;
    } else if (origin === 'null') {
      return "cross-origin request refused (origin 'null')";
    }
    return undefined;
  }
}

/** The request's JSON body, or undefined if it is not JSON or too large. */
async function readJson(req: IncomingMessage): Promise<{ value: unknown } | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  try {
    return { value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch {
    return undefined;
  }
}
