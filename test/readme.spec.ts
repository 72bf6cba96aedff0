import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness/processes.js';

/** A pure check of the docs: every README code block marked `<!-- from: <file> -->` appears in that file. */
describe('README recipes', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const quoted = [...readme.matchAll(/<!-- from: (\S+) -->\n```ts\n([\s\S]*?)\n```/g)].map((m) => [m[1], m[2]]);

  it('quotes at least the five recipes', () => {
    expect(quoted.length).toBeGreaterThanOrEqual(5);
  });

  it.each(quoted)('the block quoted from %s is still there verbatim', (file, code) => {
    expect(readFileSync(join(ROOT, file), 'utf8')).toContain(code);
  });
});
