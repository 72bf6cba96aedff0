/**
 * `npm run demo [-- --replicas N --duration S]`: a throwaway etcd, N replicas of sample-app as separate
 * processes, a graceful leader stop, a SIGKILL, concurrent withdrawals, and a summary. Leaves nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { EtcdServer, INSTALL_HINT, freePort } from '../test/harness/etcd.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COLORS = [36, 33, 35, 32, 34, 31];
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin'];
const OPENING_BALANCE = 10_000;
const TTL = 3;

const args = parseArgs(process.argv.slice(2));
const started = performance.now();
const elapsed = () => ((performance.now() - started) / 1000).toFixed(1).padStart(5);
const say = (text: string) => console.log(`\x1b[1m[demo ${elapsed()}s]\x1b[0m ${text}`);

class Replica {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  alive = true;
  leaderTicks = 0;
  reportRuns = 0;
  private readonly listeners: Array<(line: string) => void> = [];

  constructor(
    readonly name: string,
    readonly port: number,
    color: number,
    endpoint: string,
  ) {
    this.child = spawn(process.execPath, [join(ROOT, 'sample-app', 'dist', 'main.js')], {
      env: { ...process.env, ETCD_HOSTS: endpoint, PORT: String(port), IDENTITY: name, LOCK_TTL: String(TTL), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const label = `\x1b[${color}m[${name}]\x1b[0m`;
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.replace(/^\[Nest\] \d+\s+-\s+[^A-Z]*(AM|PM)?\s+/, '');
        if (line.includes('leader tick')) this.leaderTicks++;
        if (line.includes('report started')) this.reportRuns++;
        console.log(`${label} ${line}`);
        for (const listener of [...this.listeners]) listener(line);
      }
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', () => {
        this.alive = false;
        resolve();
      }),
    );
  }

  /** Resolves with the first line from now on that contains `text`. */
  next(text: string): Promise<string> {
    return new Promise((resolve) => {
      const listener = (line: string) => {
        if (!line.includes(text)) return;
        this.listeners.splice(this.listeners.indexOf(listener), 1);
        resolve(line);
      };
      this.listeners.push(listener);
    });
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    if (!this.alive) return;
    this.child.kill(signal);
    await this.exited;
  }
}

interface Failover {
  how: string;
  from: string;
  to: string;
  ms: number;
}

async function main(): Promise<number> {
  let etcd: EtcdServer;
  try {
    etcd = await EtcdServer.start();
  } catch (err) {
    console.error(`Could not start etcd: ${err instanceof Error ? err.message : err}\n${INSTALL_HINT}`);
    return 1;
  }
  const client = new Etcd3({ hosts: etcd.endpoint });
  const replicas: Replica[] = [];
  let interrupted = false;
  const onSigint = async () => {
    if (interrupted) return;
    interrupted = true;
    say('interrupted: stopping replicas and etcd');
    await Promise.all(replicas.map((r) => r.stop('SIGTERM')));
    client.close();
    await etcd.destroy();
    process.exit(130);
  };
  process.on('SIGINT', onSigint);

  try {
    say(`etcd ${etcd.endpoint} started; opening ${ACCOUNTS.length} accounts with ${OPENING_BALANCE} each`);
    for (const id of ACCOUNTS) await client.put(`sample/accounts/${id}`).value(String(OPENING_BALANCE));

    const leaderGained = () =>
      Promise.race(replicas.filter((r) => r.alive).map((r) => r.next('Leadership gained').then(() => r)));
    for (let i = 1; i <= args.replicas; i++) {
      replicas.push(new Replica(`replica-${i}`, await freePort(), COLORS[(i - 1) % COLORS.length], etcd.endpoint));
    }
    const firstLeader = leaderGained();
    await Promise.all(replicas.map((r) => r.next('listening on')));
    let leader = await firstLeader;
    say(`${replicas.length} replicas up; ${leader.name} leads`);

    const failovers: Failover[] = [];
    const failover = async (how: string, signal: NodeJS.Signals) => {
      const old = leader;
      const next = leaderGained();
      const t0 = performance.now();
      say(`${how}: ${signal} to the leader, ${old.name}`);
      void old.stop(signal);
      leader = await next;
      const ms = Math.round(performance.now() - t0);
      failovers.push({ how, from: old.name, to: leader.name, ms });
      say(`${leader.name} leads ${ms} ms after the ${signal}`);
    };

    await pause(args.duration * 0.25);
    await failover('graceful stop', 'SIGTERM');

    await pause(args.duration * 0.2);
    const withdrawals = await fireWithdrawals(replicas.filter((r) => r.alive));
    say(`withdrawals: ${withdrawals.accepted} accepted, ${withdrawals.refused} refused, ${withdrawals.failed} failed`);

    if (replicas.filter((r) => r.alive).length >= 2) {
      await pause(args.duration * 0.15);
      await failover('crash', 'SIGKILL');
    }

    await pause(args.duration * 0.4);
    say('stopping the remaining replicas (SIGTERM)');
    await Promise.all(replicas.map((r) => r.stop('SIGTERM')));

    const balances = await client.getAll().prefix('sample/accounts/').strings();
    const total = Object.values(balances).reduce((sum, v) => sum + Number(v), 0);
    const expected = ACCOUNTS.length * OPENING_BALANCE - withdrawals.acceptedAmount;
    const negative = Object.values(balances).some((v) => Number(v) < 0);

    console.log('\nSummary');
    table(['leader change', 'from', 'to', 'failover'], failovers.map((f) => [f.how, f.from, f.to, `${f.ms} ms`]));
    table(
      ['replica', 'leader ticks', 'report runs', 'ended'],
      replicas.map((r, i) => [r.name, String(r.leaderTicks), String(r.reportRuns), endedHow(r, i, failovers)]),
    );
    table(
      ['withdrawals', 'count', 'amount'],
      [
        ['accepted', String(withdrawals.accepted), String(withdrawals.acceptedAmount)],
        ['refused (insufficient funds)', String(withdrawals.refused), '—'],
        ['failed', String(withdrawals.failed), '—'],
      ],
    );
    table(['account', 'final balance'], Object.entries(balances).map(([k, v]) => [k.split('/').pop() as string, v]));
    const ok = total === expected && !negative && withdrawals.failed === 0;
    console.log(
      `\nMoney: ${ACCOUNTS.length * OPENING_BALANCE} opening - ${withdrawals.acceptedAmount} withdrawn = ${expected}; ` +
        `balances add up to ${total}: ${ok ? 'no money lost or created' : 'INVARIANT BROKEN'}`,
    );
    // The SIGKILLed replica's lease would expire after its TTL; revoke it so etcd is left empty right away.
    const { leases } = await client.leaseClient.leaseLeases({});
    for (const lease of leases) await client.leaseClient.leaseRevoke({ ID: lease.ID });
    await client.delete().all();
    return ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
    client.close();
    await etcd.destroy();
  }
}

/** Concurrent withdrawals at every live replica: 40 per replica, random accounts and amounts. */
async function fireWithdrawals(targets: Replica[]) {
  const result = { accepted: 0, refused: 0, failed: 0, acceptedAmount: 0 };
  const requests = targets.flatMap((replica) =>
    Array.from({ length: 40 }, async () => {
      const account = ACCOUNTS[Math.floor(Math.random() * ACCOUNTS.length)];
      const amount = 1 + Math.floor(Math.random() * 1500);
      try {
        const res = await fetch(`http://127.0.0.1:${replica.port}/accounts/${account}/withdraw`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ amount }),
        });
        const body = (await res.json()) as { accepted?: boolean };
        if (res.ok && body.accepted) {
          result.accepted++;
          result.acceptedAmount += amount;
        } else if (res.ok) result.refused++;
        else result.failed++;
      } catch {
        result.failed++;
      }
    }),
  );
  await Promise.all(requests);
  return result;
}

function endedHow(replica: Replica, index: number, failovers: Failover[]): string {
  const f = failovers.find((x) => x.from === replica.name);
  if (f) return f.how === 'crash' ? 'SIGKILL' : 'SIGTERM (mid-run)';
  return index >= 0 ? 'SIGTERM (end)' : '';
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

function pause(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

function parseArgs(argv: string[]): { replicas: number; duration: number } {
  const out = { replicas: 3, duration: 24 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], Number(argv[i + 1])];
    if ((flag === '--replicas' || flag === '--duration') && Number.isInteger(value)) {
      out[flag === '--replicas' ? 'replicas' : 'duration'] = value;
      i++;
    } else {
      console.error(`usage: npm run demo -- [--replicas N (2-6)] [--duration S (12-600)]; got '${flag}'`);
      process.exit(2);
    }
  }
  if (out.replicas < 2 || out.replicas > 6) throw new Error('--replicas must be between 2 and 6');
  if (out.duration < 12 || out.duration > 600) throw new Error('--duration must be between 12 and 600 seconds');
  return out;
}

process.exitCode = await main();
