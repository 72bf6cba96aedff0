import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A file the page loads: its media type and bytes. */
export interface DashboardAsset {
  readonly type: string;
  readonly body: Buffer;
}

const JS = 'text/javascript; charset=utf-8';
const require = createRequire(import.meta.url);
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
// `dashboard-ui/` sits beside `lib/` and `dist/` in the package: two levels up from this module in either.
const uiDir = fileURLToPath(new URL('../../dashboard-ui/', import.meta.url));

/**
 * The page's files, by the name the page asks for. Preact (with its hooks) and htm are served from their own
 * packages: the page needs no build step and no CDN.
 */
const FILES: Readonly<Record<string, () => DashboardAsset>> = {
  'app.js': () => ({ type: JS, body: readFileSync(join(uiDir, 'app.js')) }),
  'style.css': () => ({ type: 'text/css; charset=utf-8', body: readFileSync(join(uiDir, 'style.css')) }),
  'preact.js': () => ({ type: JS, body: readFileSync(join(packageDir('preact'), 'dist/preact.module.js')) }),
  'hooks.js': () => ({ type: JS, body: readFileSync(join(packageDir('preact'), 'hooks/dist/hooks.module.js')) }),
  'htm.js': () => ({ type: JS, body: readFileSync(join(packageDir('htm'), 'dist/htm.module.js')) }),
};

const cache = new Map<string, DashboardAsset>();

/** The asset called `name`, or undefined for any other name (never a path: nothing else is readable). */
export function dashboardAsset(name: string): DashboardAsset | undefined {
  const load = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
  if (!load) return undefined;
  let asset = cache.get(name);
  if (!asset) {
    asset = load();
    cache.set(name, asset);
  }
  return asset;
}

const escapeAttribute = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/**
 * The page's HTML and its Content-Security-Policy: scripts only from this server (the import map, inline, by its
 * hash), no inline handlers, no framing. `base` is where the page is mounted (`''` or `/path`, checked by
 * `mountPathProblem`: no character that JSON or HTML would need to escape).
 */
export function dashboardPage(base: string, token: string): { html: string; csp: string } {
  const importMap = JSON.stringify({
    imports: { preact: `${base}/assets/preact.js`, 'preact/hooks': `${base}/assets/hooks.js`, htm: `${base}/assets/htm.js` },
  });
  const hash = createHash('sha256').update(importMap).digest('base64');
  const b = escapeAttribute(base);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nestjs-etcd-lock</title>
<meta name="etcd-lock-base" content="${b}">
<meta name="etcd-lock-token" content="${escapeAttribute(token)}">
<link rel="stylesheet" href="${b}/assets/style.css">
<script type="importmap">${importMap}</script>
<script type="module" src="${b}/assets/app.js"></script>
</head>
<body><div id="app"><p class="empty">Loading…</p></div></body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${hash}'`,
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  return { html, csp };
}
