import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { diagnosticsChannelOf, EtcdLockEventName } from '../lib/index.js';
import { ROOT } from './harness/processes.js';

/**
 * Pure checks of the docs a user reads (the README, the guides in docs/, ARCHITECTURE, CONTRIBUTING, the bench
 * results): every code block marked `<!-- from: <file> -->` appears verbatim in that file, and every relative link
 * leads to a file that exists, and to a heading in it when it names one.
 */
const DOCS = [
  'README.md',
  'ARCHITECTURE.md',
  'CONTRIBUTING.md',
  'bench/RESULTS.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const text = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** GitHub's anchor for a heading: lower case, punctuation but hyphens dropped, spaces to hyphens. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- _]/gu, '')
    .replaceAll(' ', '-');

function anchors(file: string): Set<string> {
  const withoutCode = text(file).replace(/```[\s\S]*?```/g, '');
  return new Set([...withoutCode.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1])));
}

describe('the docs', () => {
  const quoted = DOCS.flatMap((doc) =>
    [...text(doc).matchAll(/<!-- from: (\S+) -->\n```ts\n([\s\S]*?)\n```/g)].map((m) => [doc, m[1], m[2]] as const),
  );
  const links = DOCS.flatMap((doc) =>
    [
      ...text(doc)
        .replace(/```[\s\S]*?```/g, '')
        .matchAll(/\]\(([^)\s]+)\)/g),
    ]
      .map((m) => m[1])
      .filter((target) => !/^(https?:|mailto:)/.test(target))
      .map((target) => [doc, target] as const),
  );

  it('are a short README and a guide per feature', () => {
    expect(text('README.md').split('\n').length).toBeLessThan(300);
    expect(DOCS.length).toBeGreaterThanOrEqual(16);
    // The recipes quoted from the sample app, and the links between the pages.
    expect(quoted.length).toBeGreaterThanOrEqual(10);
    expect(links.length).toBeGreaterThanOrEqual(30);
  });

  it("the README's code is all quoted from the sample app, so all of it is checked", () => {
    const blocks = text('README.md').match(/```ts\n/g) ?? [];
    const marked = text('README.md').match(/<!-- from: \S+ -->\n```ts\n/g) ?? [];
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    expect(marked).toHaveLength(blocks.length);
  });

  it.each(quoted)('%s: the block quoted from %s is still there verbatim', (_doc, file, code) => {
    expect(text(file)).toContain(code);
  });

  it.each(links)('%s: the link to %s leads somewhere', (doc, target) => {
    const [path, anchor] = target.split('#');
    const file = path === '' ? doc : relative(ROOT, join(ROOT, dirname(doc), path));
    expect(existsSync(join(ROOT, file))).toBe(true);
    if (anchor !== undefined && file.endsWith('.md')) expect([...anchors(file)]).toContain(anchor);
  });

  it("list every event's diagnostics channel by the name it is published on", () => {
    const listed = [...text('docs/observability.md').matchAll(/^\| `(nestjs-etcd-lock:[^`]+)` \|/gm)].map((m) => m[1]);
    expect(listed.sort()).toEqual(Object.values(EtcdLockEventName).map(diagnosticsChannelOf).sort());
  });
});
