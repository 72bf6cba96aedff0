import type { IKeyValue, IRequestOp } from 'etcd3';
import { EtcdUnavailableError, UnknownCandidateError } from '../errors.js';
import { createdAt, oldestFirst } from '../etcd/requests.js';
import type { QueueContext } from '../queue/queue-context.js';
import { queueKeyFilter } from '../queue/holder-watch.js';

/** How many times a transfer reads the queue again after etcd refused its transaction (the queue changed). */
const ATTEMPTS = 5;

/** The election: where its keys are and how to reach etcd. */
export type TransferContext = Pick<QueueContext, 'rpc' | 'name' | 'namePrefix'>;

/** The leader's key as it was when it led: the transfer goes on only while it is still the first. */
export interface TransferLeader {
  readonly key: string;
  readonly createRevision: bigint;
}

/** Whom to hand over to: a candidate's identity (its key's value), its key, or undefined for the next in line. */
export type TransferTarget = string | { readonly key: string } | undefined;

/** Where the queue stands: our key (first), the chosen candidate, and the candidates between us. */
interface TransferPlan {
  readonly mine: IKeyValue;
  /** The candidate who leads once our key goes, or undefined when nobody else campaigns (a plain resign). */
  readonly next: IKeyValue | undefined;
  /** The candidates between ours and the chosen one: their keys go first. */
  readonly ahead: readonly IKeyValue[];
}

/**
 * Reads the election's queue and plans the hand-over from `leader` to the first candidate whose value is `to` (or
 * the next in line). Undefined when our key is no longer the first (a transfer in doubt that etcd applied).
 * `fallback`: a chosen candidate that is gone is replaced by the next in line instead of refusing.
 */
async function plan(
  ctx: TransferContext,
  leader: TransferLeader,
  to: TransferTarget,
  fallback: boolean,
): Promise<TransferPlan | undefined> {
  const res = await ctx.rpc.range(oldestFirst(Buffer.from(ctx.namePrefix)), `read the candidates of election '${ctx.name}'`);
  const queue = res.kvs.filter(queueKeyFilter('election', ctx.namePrefix));
  const [mine, ...others] = queue;
  if (!mine || mine.key.toString() !== leader.key || BigInt(mine.create_revision) !== leader.createRevision) return undefined;
  let next =
    to === undefined
      ? others[0]
      : others.find((kv) => (typeof to === 'string' ? kv.value.toString() === to : kv.key.toString() === to.key));
  if (!next && !fallback) throw new UnknownCandidateError(ctx.name, typeof to === 'object' ? to.key : to);
  next ??= others[0];
  return { mine, next, ahead: next ? others.slice(0, others.indexOf(next)) : [] };
}

const guard = (keys: ReadonlyArray<IKeyValue | undefined>) =>
  keys.filter((kv): kv is IKeyValue => kv !== undefined).map((kv) => createdAt(kv.key, kv.create_revision));
const deleteOps = (keys: readonly IKeyValue[]): IRequestOp[] => keys.map((kv) => ({ request_delete_range: { key: kv.key } }));

/**
 * Hands the election led by `leader` to the candidate `to` (or the next in line), with nobody leading in between:
 * first the keys of the candidates between ours and the chosen one are deleted (they campaign again, behind) while
 * ours still leads; then ours, so that the chosen one's key is the oldest at that revision. Each step is guarded by
 * the create revisions it read; a step refused because the queue changed is planned again (a chosen one that left:
 * the next in line), and one whose answer is lost is resolved by that read. A waiter's key is never deleted in the
 * same revision as the key ahead of it, which it could take for its turn. `beforeCommit` runs once the candidate is
 * known to exist: the term ends and its work drains there. Resolves with the new leader's identity (its key's value),
 * or null when our key was not the first any more.
 */
export async function transferLeadership(
  ctx: TransferContext,
  leader: TransferLeader,
  to: TransferTarget,
  beforeCommit: () => Promise<void>,
  /** With nobody else campaigning, delete our key anyway (a term bounded by `maxTermMs`): resolves with null. */
  evenAlone = false,
): Promise<string | null> {
  let current = await plan(ctx, leader, to, evenAlone);
  if (!current) return null;
  await beforeCommit();
  for (let attempt = 1; ; attempt++) {
    const { mine, next, ahead } = current;
    const last = ahead.length === 0;
    try {
      const res = await ctx.rpc.txn(
        { compare: guard([mine, ...ahead, next]), success: deleteOps(last ? [mine] : ahead) },
        `transfer election '${ctx.name}'`,
      );
      if (res.succeeded && last) return next?.value.toString() ?? null;
    } catch (err) {
      // In doubt: applied or not, the next read says.
      if (!(err instanceof EtcdUnavailableError) || attempt >= ATTEMPTS) throw err;
    }
    if (attempt >= ATTEMPTS)
      throw new EtcdUnavailableError(`Could not transfer election '${ctx.name}': the queue kept changing`, ctx.rpc.endpoints);
    const again = await plan(ctx, leader, to, true);
    // Our key is gone: the last step was applied (its answer lost).
    if (!again) return next?.value.toString() ?? null;
    current = again;
  }
}
