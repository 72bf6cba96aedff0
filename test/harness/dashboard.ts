import type { DashboardView } from '../../lib/dashboard/dashboard-view.js';

/** The page's token, read from its HTML as the browser would. */
export async function pageToken(pageUrl: string): Promise<string> {
  const html = await (await fetch(pageUrl)).text();
  const token = /name="etcd-lock-token" content="([0-9a-f]+)"/.exec(html)?.[1];
  if (!token) throw new Error(`no token in the page at ${pageUrl}`);
  return token;
}

/** A page's stream of views (server-sent events), read until `done(view)`; the stream is closed then. */
export async function viewWhen(
  eventsUrl: string,
  done: (view: DashboardView) => boolean,
  headers: Record<string, string> = {},
): Promise<DashboardView> {
  const stop = new AbortController();
  const res = await fetch(eventsUrl, { signal: stop.signal, headers });
  if (!res.ok || !res.body) throw new Error(`GET ${eventsUrl}: ${res.status}`);
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for await (const chunk of res.body) {
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      let end = buffered.indexOf('\n\n');
      while (end >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (data) {
          const message = JSON.parse(data) as { view?: DashboardView };
          if (message.view && done(message.view)) return message.view;
        }
        end = buffered.indexOf('\n\n');
      }
    }
    throw new Error(`the stream at ${eventsUrl} ended`);
  } finally {
    stop.abort();
  }
}

/** Posts an action as the page does (same origin, with the token), or as `headers` say. */
export async function postAction(
  actionsUrl: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<{ status: number; message: string }> {
  const res = await fetch(actionsUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const answer = (await res.json().catch(() => ({}))) as { message?: string };
  return { status: res.status, message: answer.message ?? '' };
}
