// The dashboard page: Preact components written with htm (no build step). Every name and value from etcd is
// rendered as text by Preact, never as HTML. The server pushes a whole view after each change (server-sent events).
import htm from 'htm';
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';

const html = htm.bind(h);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
const BASE = meta('etcd-lock-base');
const TOKEN = meta('etcd-lock-token');

/** A stable colour per identity, so that one replica has one colour everywhere on the page. */
function colour(identity) {
  // FNV-1a, then the golden angle: names that differ in one character get far-apart hues.
  let hash = 0x811c9dc5;
  for (const c of String(identity)) hash = Math.imul(hash ^ c.codePointAt(0), 16777619);
  return `hsl(${Math.round(((hash >>> 0) * 137.508) % 360)} 60% 45%)`;
}

function duration(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const clock = (t) => (t == null ? '—' : new Date(t).toLocaleTimeString());

function useFeed() {
  const [state, setState] = useState({ view: undefined, error: undefined, live: false, receivedAt: 0 });
  useEffect(() => {
    const source = new EventSource(`${BASE}/events`);
    source.onopen = () => setState((s) => ({ ...s, live: true }));
    source.onerror = () => setState((s) => ({ ...s, live: false }));
    // Each message is a whole view: when they come faster than the page draws (a burst of changes), only the
    // latest is parsed and drawn, once per frame, so the page never falls behind etcd.
    let latest;
    let frame = 0;
    const draw = () => {
      frame = 0;
      const message = JSON.parse(latest);
      setState((s) =>
        message.view ? { view: message.view, error: undefined, live: true, receivedAt: Date.now() } : { ...s, error: message.error, live: true },
      );
    };
    source.onmessage = (event) => {
      latest = event.data;
      frame ||= requestAnimationFrame(draw);
    };
    return () => {
      cancelAnimationFrame(frame);
      source.close();
    };
  }, []);
  return state;
}

function useNow(ms = 250) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

async function act(body, setToast) {
  const res = await fetch(`${BASE}/actions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-etcd-lock-dashboard-token': TOKEN },
    body: JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({ message: res.statusText }));
  setToast({ ok: res.ok, text: answer.message ?? String(res.status) });
}

function ActionButton({ label, question, body, setToast }) {
  const onClick = () => {
    if (window.confirm(question)) act(body, setToast);
  };
  return html`<button class="action" data-action=${body.action} onClick=${onClick}>${label}</button>`;
}

const Who = ({ party }) =>
  html`<span class="who" style=${{ '--c': colour(party.value) }}>${party.value}</span>
    <a class="lease" href=${`#session-${party.lease}`} title="this holder's session">${party.lease}</a>`;

function Waiters({ list }) {
  if (list.length === 0) return html`<span class="muted">none</span>`;
  return html`<ol class="waiters">
    ${list.map((w) => html`<li data-waiter=${w.value}><span class="who" style=${{ '--c': colour(w.value) }}>${w.value}</span></li>`)}
  </ol>`;
}

function Locks({ view, match, now, offset, setToast }) {
  const locks = view.locks.filter((l) => match(l.name));
  return html`<section id="locks"><h2>Locks <span class="count">${locks.length}</span></h2>
    ${
      locks.length === 0
        ? html`<p class="empty">No lock is held.</p>`
        : html`<table><thead><tr><th>Name</th><th>Holder</th><th>Fencing token</th><th>Held for</th><th>Waiters, in order</th>${view.actions ? html`<th></th>` : null}</tr></thead>
        <tbody>${locks.map(
          (l) => html`<tr data-lock=${l.name}>
            <td class="name">${l.name}</td><td><${Who} party=${l.holder} /></td><td class="num">${l.holder.token}</td>
            <td class="num">${duration(now - offset - l.since)}</td><td><${Waiters} list=${l.waiters} /></td>
            ${
              view.actions
                ? html`<td><${ActionButton} label="Release" setToast=${setToast}
                    question=${`Release lock '${l.name}' held by '${l.holder.value}' (token ${l.holder.token})? Its signal aborts; work it started may still run.`}
                    body=${{ action: 'release', name: l.name, token: l.holder.token }} /></td>`
                : null
            }
          </tr>`,
        )}</tbody></table>`
    }</section>`;
}

function Timeline({ terms, now, offset }) {
  if (terms.length === 0) return null;
  const end = now - offset;
  const start = Math.max(Math.min(...terms.map((t) => t.from)), end - 10 * 60_000);
  const span = Math.max(end - start, 1000);
  const x = (t) => ((Math.max(t, start) - start) / span) * 1000;
  return html`<svg class="timeline" viewBox="0 0 1000 28" preserveAspectRatio="none" role="img" aria-label="terms over time">
    ${terms
      .filter((t) => (t.to ?? end) >= start)
      .map(
        (t) => html`<rect data-term=${t.token} x=${x(t.from)} y="2" height="24" width=${Math.max(x(t.to ?? end) - x(t.from), 1)}
          fill=${colour(t.identity)}><title>${`${t.identity}: term ${t.token}, ${clock(t.from)} – ${t.to ? clock(t.to) : 'now'}`}</title></rect>`,
      )}
  </svg>
  <div class="axis"><span>${clock(start)}</span><span>now</span></div>`;
}

function Terms({ terms, now, offset }) {
  const recent = terms.slice(-6).reverse();
  return html`<ul class="terms">${recent.map((t, i) => {
    const before = recent[i + 1];
    const gap = before?.to != null ? t.from - before.to : undefined;
    return html`<li data-term-row=${t.token}><span class="who" style=${{ '--c': colour(t.identity) }}>${t.identity}</span>
      term ${t.token}, ${t.to ? `led ${duration(t.to - t.from)}` : `leading for ${duration(now - offset - t.from)}`}
      ${gap !== undefined ? html`<span class="muted"> · handover gap ${duration(gap)}</span>` : null}</li>`;
  })}</ul>`;
}

function Elections({ view, match, now, offset, setToast }) {
  const elections = view.elections.filter((e) => match(e.name));
  return html`<section id="elections"><h2>Elections <span class="count">${elections.length}</span></h2>
    ${elections.length === 0 ? html`<p class="empty">No election.</p>` : null}
    ${elections.map(
      (e) => html`<div class="card" data-election=${e.name}>
        <div class="card-head"><span class="name">${e.name}</span>
          ${e.leader ? html`<span>leader <span data-leader><${Who} party=${e.leader} /></span> term <b class="num">${e.leader.token}</b></span>` : html`<span class="warn">no leader</span>`}
          ${
            view.actions && e.leader
              ? html`<${ActionButton} label="Resign" setToast=${setToast}
                  question=${`Make '${e.leader.value}' step down from '${e.name}' (term ${e.leader.token})?`}
                  body=${{ action: 'resign', name: e.name, token: e.leader.token }} />`
              : null
          }</div>
        <div class="row"><span class="label">Candidates</span><${Waiters} list=${e.candidates} /></div>
        <${Timeline} terms=${e.terms} now=${now} offset=${offset} />
        <${Terms} terms=${e.terms} now=${now} offset=${offset} />
      </div>`,
    )}</section>`;
}

function Shards({ view, match }) {
  const groups = view.shardGroups.filter((g) => match(g.group));
  return html`<section id="shards"><h2>Shard groups <span class="count">${groups.length}</span></h2>
    ${groups.length === 0 ? html`<p class="empty">No shard group.</p>` : null}
    ${groups.map((g) => {
      const shards = Array.from({ length: g.shards }, (_, i) => i);
      return html`<div class="card" data-group=${g.group}><div class="card-head"><span class="name">${g.group}</span><span>${g.shards} shards, ${g.members.length} replicas</span></div>
        <table class="grid"><thead><tr><th></th>${shards.map((i) => html`<th>${i}</th>`)}</tr></thead>
        <tbody>${g.members.map(
          (m) => html`<tr data-member=${m}><th><span class="who" style=${{ '--c': colour(m) }}>${m}</span></th>
            ${shards.map((i) => (g.owners[i] === m ? html`<td class="owned" data-shard=${i} style=${{ background: colour(m) }}></td>` : html`<td></td>`))}</tr>`,
        )}</tbody></table>
        ${
          g.moves.length > 0
            ? html`<ul class="moves">${g.moves
                .slice(-5)
                .reverse()
                .map((mv) => html`<li>${clock(mv.at)}: shard ${mv.shard} ${mv.from ?? 'nobody'} → ${mv.to ?? 'nobody'}</li>`)}</ul>`
            : null
        }</div>`;
    })}</section>`;
}

function Permits({ view, match }) {
  const sems = view.semaphores.filter((s) => match(s.name));
  const rws = view.rwlocks.filter((r) => match(r.name));
  if (sems.length + rws.length === 0) return html`<section id="permits"><h2>Semaphores and read/write locks</h2><p class="empty">None held.</p></section>`;
  return html`<section id="permits"><h2>Semaphores and read/write locks <span class="count">${sems.length + rws.length}</span></h2>
    <table><thead><tr><th>Name</th><th>Kind</th><th>Holders</th><th>Waiters, in order</th></tr></thead><tbody>
    ${sems.map(
      (s) => html`<tr data-semaphore=${s.name}><td class="name">${s.name}</td><td>semaphore ${s.holders.length}/${s.limit ?? '?'}</td>
        <td>${s.holders.map((p) => html`<${Who} party=${p} /> `)}</td><td><${Waiters} list=${s.waiters} /></td></tr>`,
    )}
    ${rws.map(
      (r) => html`<tr data-rwlock=${r.name}><td class="name">${r.name}</td><td>read/write</td>
        <td>${r.holders.map((p) => html`<span class="mode">${p.mode}</span> <${Who} party=${p} /> `)}</td>
        <td><${Waiters} list=${r.waiters.map((w) => ({ ...w, value: `${w.mode}: ${w.value}` }))} /></td></tr>`,
    )}
    </tbody></table></section>`;
}

function Jobs({ view, match, setToast }) {
  const jobs = view.jobs.filter((j) => match(j.name));
  return html`<section id="jobs"><h2>Scheduled jobs <span class="count">${jobs.length}</span></h2>
    ${
      jobs.length === 0
        ? html`<p class="empty">No scheduled job.</p>`
        : html`<table><thead><tr><th>Name</th><th>Schedule</th><th>Next fire time</th><th>State</th><th>Last runs (newest first)</th>${view.actions ? html`<th></th>` : null}</tr></thead><tbody>
        ${jobs.map(
          (j) => html`<tr data-job=${j.name}><td class="name">${j.name}</td><td><code>${j.schedule}</code></td><td>${clock(j.nextFireTime)}</td>
            <td>${j.paused ? html`<span class="warn">paused</span>` : j.running ? 'running' : 'idle'}</td>
            <td class="runs">${j.runs.map(
              (r) => html`<span class=${`run ${r.outcome}`} title=${`${clock(r.fireTime)} ${r.kind} #${r.attempt} on ${r.identity ?? '—'}: ${r.outcome}${r.error ? ` (${r.error})` : ''}${r.startedAt && r.endedAt ? `, ${duration(r.endedAt - r.startedAt)}` : ''}`}>${r.outcome}</span>`,
            )}</td>
            ${
              view.actions
                ? html`<td class="buttons">
                    ${
                      j.paused
                        ? html`<${ActionButton} label="Resume" setToast=${setToast} question=${`Resume job '${j.name}' across the fleet?`} body=${{ action: 'resume', name: j.name }} />`
                        : html`<${ActionButton} label="Pause" setToast=${setToast} question=${`Pause job '${j.name}' across the fleet?`} body=${{ action: 'pause', name: j.name }} />`
                    }
                    <${ActionButton} label="Run now" setToast=${setToast} question=${`Run job '${j.name}' now, once, on one replica?`} body=${{ action: 'trigger', name: j.name }} /></td>`
                : null
            }</tr>`,
        )}</tbody></table>`
    }</section>`;
}

function Sessions({ view, now, receivedAt }) {
  return html`<section id="sessions"><h2>Sessions <span class="count">${view.sessions.length}</span></h2>
    ${
      view.sessions.length === 0
        ? html`<p class="empty">No session holds anything.</p>`
        : html`<table><thead><tr><th>Lease</th><th>Replica</th><th>TTL left</th><th>Holds</th></tr></thead><tbody>
        ${view.sessions.map((s) => {
          // Counted down here from the TTL read with the last view: a live session is renewed before it runs out.
          const left = Math.max(0, s.ttl - (now - receivedAt) / 1000);
          const part = s.grantedTtl > 0 ? Math.min(1, left / s.grantedTtl) : 0;
          return html`<tr id=${`session-${s.lease}`} data-session=${s.lease}><td class="num">${s.lease}</td>
            <td>${s.identities.map((i) => html`<span class="who" style=${{ '--c': colour(i) }}>${i}</span> `)}</td>
            <td><div class="ttl"><div style=${{ width: `${part * 100}%` }}></div></div><span class="num">${left.toFixed(1)} s of ${s.grantedTtl} s</span></td>
            <td>${s.holds.join(', ')}</td></tr>`;
        })}</tbody></table>`
    }</section>`;
}

function App() {
  const { view, error, live, receivedAt } = useFeed();
  const [filter, setFilter] = useState('');
  const [toast, setToast] = useState(undefined);
  const now = useNow();
  if (!view) return html`<p class="empty">${error ? `etcd: ${error}` : 'Waiting for the first view…'}</p>`;
  // Times in the view are the server's: shift them by the difference to this browser's clock at receipt.
  const offset = receivedAt - view.at;
  const needle = filter.trim().toLowerCase();
  const match = (name) => needle === '' || name.toLowerCase().includes(needle);
  const props = { view, match, now, offset, setToast };
  return html`<header>
      <h1>nestjs-etcd-lock</h1>
      <span class=${live ? 'pill live' : 'pill down'} data-live=${String(live)}>${live ? 'live' : 'reconnecting'}</span>
      <span class="etcd">etcd ${view.etcd.endpoints.join(', ')} · prefix <code>${view.etcd.prefix || '(none)'}</code> · revision <b data-revision>${view.revision}</b> · read in ${view.etcd.readMs.toFixed(1)} ms</span>
      <input type="search" placeholder="Filter names" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} aria-label="Filter names" />
      <span class="mode">${view.actions ? 'actions enabled' : 'read-only'}</span>
    </header>
    ${error ? html`<p class="banner">etcd: ${error} (showing the last view)</p>` : null}
    ${toast ? html`<p class=${toast.ok ? 'toast ok' : 'toast fail'} data-toast onClick=${() => setToast(undefined)}>${toast.text}</p>` : null}
    <nav><a href="#elections">Elections</a><a href="#locks">Locks</a><a href="#shards">Shards</a><a href="#permits">Permits</a><a href="#jobs">Jobs</a><a href="#sessions">Sessions</a></nav>
    <main>
      <${Elections} ...${props} /><${Locks} ...${props} /><${Shards} ...${props} /><${Permits} ...${props} /><${Jobs} ...${props} />
      <${Sessions} view=${view} now=${now} receivedAt=${receivedAt} />
    </main>`;
}

render(html`<${App} />`, document.getElementById('app'));
