import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useEtcd } from './harness/fixtures.js';
import { NodeProcess, ROOT } from './harness/processes.js';

const etcd = useEtcd();
const run = (cwd: string, command: string, args: string[]) =>
  execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** The consumer apps: Nest 12 as an ES module app, Nest 11 as a CommonJS app (Node 20.19+ can `require` ESM). */
const consumers: Array<[string, { type?: 'module'; deps: (ours: Record<string, string>) => Record<string, string> }]> = [
  [
    'a fresh Nest 12 app (ES modules)',
    {
      type: 'module',
      deps: (ours) => ({
        '@nestjs/common': ours['@nestjs/common'],
        '@nestjs/core': ours['@nestjs/core'],
        '@nestjs/schedule': ours['@nestjs/schedule'],
      }),
    },
  ],
  ['a Nest 11 app (CommonJS)', { deps: () => ({ '@nestjs/common': '^11.0.0', '@nestjs/core': '^11.0.0', '@nestjs/schedule': '^6.0.0' }) }],
];

describe('the npm package', () => {
  it('publishes types that hold only the API: @internal members are stripped', () => {
    const session = readFileSync(join(ROOT, 'dist', 'session', 'session.service.d.ts'), 'utf8');
    // Private members appear by name only (no type); nothing internal may be public.
    for (const internal of [/^ {4}readonly rpc/m, /^ {4}readonly options/m, /^ {4}deletes\(/m, /^ {4}onSession\(/m]) {
      expect(session).not.toMatch(internal);
    }
    expect(session).toContain('status(): SessionStatus');
    const memory = readFileSync(join(ROOT, 'dist', 'testing', 'in-memory-etcd.d.ts'), 'utf8');
    for (const internal of ['range(req', 'txn(req', 'keepAlive()', 'watch({', 'readonly endpoints']) expect(memory).not.toContain(internal);
    expect(memory).toContain('disconnect(): void');
  });

  let dir: string;
  let tarball: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'consumer-apps-'));
    tarball = join(dir, run(ROOT, 'npm', ['pack', '--silent', '--pack-destination', dir]).trim().split('\n').pop() as string);
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(consumers)(
    'installs from its tarball into %s outside the repository, type-checks, and runs with the decorators',
    async (_, consumer) => {
      const app = mkdtempSync(join(dir, 'app-'));
      cpSync(join(ROOT, 'test', 'fixtures', 'consumer-app'), app, { recursive: true });
      const ours = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies as Record<string, string>;
      writeFileSync(
        join(app, 'package.json'),
        JSON.stringify({
          name: 'consumer-app',
          private: true,
          ...(consumer.type ? { type: consumer.type } : {}),
          dependencies: {
            'nestjs-etcd-lock': `file:${tarball}`,
            ...consumer.deps(ours),
            etcd3: ours.etcd3,
            'reflect-metadata': ours['reflect-metadata'],
            rxjs: ours.rxjs,
          },
          devDependencies: { typescript: ours.typescript, '@types/node': ours['@types/node'] },
        }),
      );
      run(app, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']);
      // The published types compile in a strict consumer, library types included (skipLibCheck off).
      run(app, join(app, 'node_modules', '.bin', 'tsc'), ['-p', '.']);
      const replica = new NodeProcess(join(app, 'dist', 'main.js'), [etcd.endpoint]);
      expect(await replica.exited).toBe(0);
      const result = JSON.parse(replica.lines.find((l) => l.startsWith('{')) as string);
      expect(result).toMatchObject({ leader: true, testing: { asFollower: 0, asLeader: 1 } });
      expect(result.leaderRuns).toBeGreaterThanOrEqual(1);
      expect(BigInt(result.token)).toBeGreaterThan(BigInt(result.singleton));
      // The admin CLI is the package's bin: `npx nestjs-etcd-lock` runs it in the app.
      const status = run(app, 'npx', ['--no-install', 'nestjs-etcd-lock', '--endpoints', etcd.endpoint, 'status']);
      expect(status).toContain('LOCKS');
      expect(status).toContain('no session holds a key');
    },
    240_000,
  );
});
