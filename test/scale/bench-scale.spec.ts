import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeProcess } from '../harness/processes.js';

/** A case's row in the bench's JSON. */
interface Case {
  readonly id: string;
  readonly metrics: Record<string, unknown>;
}

describe('npm run bench -- --scale --quick', () => {
  it('runs the scale cases against the etcd it starts, writes their JSON and chart, and leaves etcd clean', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-scale-'));
    try {
      const bench = new NodeProcess('build/bench/run.js', ['--scale', '--quick', `--out=${out}`]);
      expect(await bench.exited).toBe(0);
      const report = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { cases: Case[]; leftovers: unknown };
      expect(report.cases.map((c) => c.id)).toEqual(['contention-scale', 'shard-fleet', 'idle-fleet', 'many-names']);
      const [contention, fleet, idle, many] = report.cases;
      // Quick runs are rough, but what they count is exact: every round ran, an idle replica sent keepalives only,
      // a rolling restart wrote the record once per change with no compare refused, and the heap was measured.
      expect(contention.metrics.rounds).toHaveLength(5);
      expect(fleet.metrics.rounds).toEqual([expect.objectContaining({ replicas: 10, writesPerStep: 2, conflictsPerStep: 0 })]);
      expect((idle.metrics.rounds as Array<{ otherRequests: number }>).map((r) => r.otherRequests)).toEqual([0]);
      expect(many.metrics).toMatchObject({ locks: 10_000, keysLeft: 0 });
      expect(Number.isFinite(many.metrics.bytesPerLock)).toBe(true);
      expect(report.leftovers).toEqual({ keys: 0, leases: 0 });
      expect(readFileSync(join(out, 'contention-scale.svg'), 'utf8')).toContain('events per hand-over');
      expect(readFileSync(join(out, 'shard-fleet.svg'), 'utf8')).toContain('moves per restart');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
