import type { EtcdPort } from '../etcd/etcd-port.js';
import { deleteHolderKey, readHolderKey } from '../inventory/holder-key.js';
import type { JobControls } from '../scheduling/job-controls.js';
import { nameProblem } from '../util/validation.js';

/** The page's actions: the CLI's `release`, `resign` and `jobs pause|resume|trigger`, with the same requests. */
export const DASHBOARD_ACTIONS = ['release', 'resign', 'pause', 'resume', 'trigger'] as const;
export type DashboardActionName = (typeof DASHBOARD_ACTIONS)[number];

/** An action as the page posts it. `token`: the holder's fencing token the operator confirmed (release, resign). */
export interface DashboardAction {
  readonly action: DashboardActionName;
  readonly name: string;
  readonly token?: string;
}

/** An action's answer: an HTTP status and a message for the operator. */
export interface ActionResult {
  readonly status: number;
  readonly message: string;
}

/** Checks a posted body; a message naming what is wrong, or the action. */
export function parseAction(body: unknown): DashboardAction | string {
  if (typeof body !== 'object' || body === null) return 'the body must be a JSON object';
  const { action, name, token } = body as Record<string, unknown>;
  if (typeof action !== 'string' || !(DASHBOARD_ACTIONS as readonly string[]).includes(action)) {
    return `"action" must be one of ${DASHBOARD_ACTIONS.join(', ')}`;
  }
  if (typeof name !== 'string') return '"name" must be a string';
  const problem = nameProblem(name);
  if (problem) return `"name" ${problem}`;
  if (action === 'release' || action === 'resign') {
    if (typeof token !== 'string' || !/^[1-9][0-9]*$/.test(token)) return '"token" must be the fencing token shown (a decimal number)';
  }
  return { action: action as DashboardActionName, name, token: token as string | undefined };
}

/**
 * Performs an action. Releasing a lock (or resigning a leader) deletes the holder's key only if its fencing token is
 * still the one the operator confirmed: a holder that changed meanwhile is left alone (409).
 */
export async function performAction(rpc: EtcdPort, prefix: string, jobs: JobControls, a: DashboardAction): Promise<ActionResult> {
  switch (a.action) {
    case 'release':
    case 'resign': {
      const kind = a.action === 'release' ? 'lock' : 'election';
      const holder = await readHolderKey(rpc, prefix, kind, a.name);
      if (!holder) return { status: 404, message: `${kind} '${a.name}' ${kind === 'lock' ? 'is not held' : 'has no leader'}` };
      if (holder.token.toString() !== a.token || !(await deleteHolderKey(rpc, kind, a.name, holder.key, holder.token))) {
        return { status: 409, message: `the ${kind === 'lock' ? 'holder' : 'leader'} of ${kind} '${a.name}' changed: nothing deleted` };
      }
      const next = holder.next !== undefined ? `next in line: '${holder.next}'` : 'nobody was waiting';
      return {
        status: 200,
        message: `${a.action === 'release' ? 'released' : 'resigned'} ${kind} '${a.name}' (token ${holder.token}); ${next}`,
      };
    }
    case 'pause':
      await jobs.fireTimes(a.name);
      await jobs.pause(a.name);
      return { status: 200, message: `paused job '${a.name}'` };
    case 'resume':
      await jobs.resume(a.name, await jobs.fireTimes(a.name));
      return { status: 200, message: `resumed job '${a.name}'` };
    case 'trigger':
      await jobs.fireTimes(a.name);
      await jobs.trigger(a.name);
      return { status: 200, message: `triggered job '${a.name}'` };
  }
}
