import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile, summarize } from '../bench/stats.js';
import { NodeProcess } from './harness/processes.js';

describe('bench statistics', () => {
  it('uses nearest-rank percentiles', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
    expect(summarize([3, 1, 2])).toMatchObject({ n: 3, median: 2, min: 1, max: 3, mean: 2 });
  });
});

describe('npm run bench', () => {
  it('runs a quick pass against the etcd it starts, writes JSON and SVG, and leaves etcd clean', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-'));
    try {
      const bench = new NodeProcess('build/bench/run.js', ['--quick', '--only=uncontended,try-held', `--out=${out}`]);
      expect(await bench.exited).toBe(0);
      const report = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8'));
      expect(report.cases.map((c: { id: string }) => c.id)).toEqual(['uncontended', 'try-held']);
      expect(report.cases[0].metrics.ours.requestsPerOpTotal).toBe(2);
      expect(report.leftovers).toEqual({ keys: 0, leases: 0 });
      expect(readFileSync(join(out, 'latest.svg'), 'utf8')).toContain('acquire+release');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 30_000);
});
