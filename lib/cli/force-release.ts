import { createInterface } from 'node:readline';
import { namePrefix } from '../etcd/keys.js';
import { nameProblem } from '../util/validation.js';
import { printable } from '../util/printable.js';
import { CliError, ExitCode } from './cli-error.js';
import type { Connection } from './connection.js';
import { transferLeadership } from '../election/leadership-transfer.js';
import { UnknownCandidateError } from '../errors.js';
import { deleteHolderKey, readHolderKey } from '../inventory/holder-key.js';

export interface ForceReleaseRequest {
  readonly kind: 'lock' | 'election';
  readonly name: string;
  /** Skip the question. */
  readonly yes: boolean;
  /** Where the question is asked and answered. */
  readonly ask: (question: string) => Promise<string>;
  readonly print: (line: string) => void;
}

/**
 * Deletes the key of the lock's holder (or the election's leader), guarded by its create revision: if another
 * holder took over between our read and the delete, nothing is deleted. The holder's signal then aborts
 * (`key-deleted`) and the next waiter in line takes over.
 */
export async function forceRelease(conn: Connection, req: ForceReleaseRequest): Promise<void> {
  const problem = nameProblem(req.name);
  if (problem) throw new CliError(ExitCode.Usage, `the ${req.kind} name ${problem}`);
  const what = req.kind === 'lock' ? `lock '${req.name}'` : `election '${req.name}'`;
  const holder = await readHolderKey(conn.rpc, conn.prefix, req.kind, req.name);
  if (!holder) {
    const none = req.kind === 'lock' ? `${what} is not held` : `${what} has no leader`;
    const under = namePrefix(conn.prefix, req.kind, req.name);
    throw new CliError(ExitCode.NotFound, `${none}: no key under '${under}' (is --prefix '${conn.prefix}' the app's prefix?)`);
  }
  const role = req.kind === 'lock' ? 'holder' : 'leader';
  // The holder's value and key are anyone's: shown escaped, so that the question cannot be spoofed.
  const summary = printable(`${what}: ${role} '${holder.value}', fencing token ${holder.token}, key ${holder.key}`);
  if (!req.yes) {
    const answer = await req.ask(
      `${summary}\nDelete this key? The ${role}'s signal aborts, but work it already started may still be running: only ` +
        'writes fenced by its token are safe from it. [y/N] ',
    );
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(ExitCode.NotDone, `not confirmed: ${what} left as it is`);
  }
  if (!(await deleteHolderKey(conn.rpc, req.kind, req.name, holder.key, holder.token))) {
    throw new CliError(ExitCode.NotDone, `the ${role} of ${what} changed before the delete: nothing deleted`);
  }
  const after = holder.next !== undefined ? `next in line: '${printable(holder.next)}'` : 'nobody was waiting';
  req.print(`${req.kind === 'lock' ? 'released' : 'resigned'} ${summary}; ${after}`);
}

/** `transfer <election> [--to <identity>]`: the operator's hand-over (see `transferElection`). */
export interface TransferRequest {
  readonly election: string;
  readonly to: string | undefined;
  readonly yes: boolean;
  readonly ask: (question: string) => Promise<string>;
  readonly print: (line: string) => void;
}

/**
 * Hands an election to candidate `to` (or the next in line) with nobody leading in between, as
 * `LeaderElectionService.transfer` does, but from outside the app: the leader's term ends by its key's deletion
 * (reason `key-deleted`), so its work is not drained first (see "Why release and resign are dangerous").
 */
export async function transferElection(conn: Connection, req: TransferRequest): Promise<void> {
  const problem = nameProblem(req.election);
  if (problem) throw new CliError(ExitCode.Usage, `the election name ${problem}`);
  if (req.to !== undefined && req.to.length === 0) throw new CliError(ExitCode.Usage, '--to names no candidate');
  const leader = await readHolderKey(conn.rpc, conn.prefix, 'election', req.election);
  if (!leader) throw new CliError(ExitCode.NotFound, `election '${req.election}' has no leader`);
  const ctx = { rpc: conn.rpc, name: req.election, namePrefix: namePrefix(conn.prefix, 'election', req.election) };
  const summary = printable(`election '${req.election}': leader '${leader.value}', term ${leader.token}`);
  let next: string | null;
  try {
    next = await transferLeadership(ctx, { key: leader.key, createRevision: leader.token }, req.to, async () => {
      if (req.yes) return;
      const answer = await req.ask(
        `${summary}\nHand it to ${req.to === undefined ? 'the next candidate' : `'${printable(req.to)}'`}? Its work may still be running. [y/N] `,
      );
      if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(ExitCode.NotDone, `not confirmed: election '${req.election}' left as it is`);
    });
  } catch (err) {
    if (err instanceof UnknownCandidateError) throw new CliError(ExitCode.NotFound, err.message);
    throw err;
  }
  if (next === null)
    throw new CliError(ExitCode.NotDone, `the leader of election '${req.election}' changed before the transfer: nothing done`);
  req.print(`transferred ${summary} to '${printable(next)}'`);
}

/** Asks on stderr and reads one line of stdin; no answer (end of input) is a no. */
export function askOnTerminal(question: string): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY === true });
    let answered = false;
    rl.question(question, (answer) => {
      answered = true;
      rl.close();
      resolve(answer);
    });
    rl.once('close', () => {
      if (answered) return;
      // End of input: no answer, on a line of its own.
      process.stderr.write('\n');
      resolve('');
    });
  });
}
