import type { LeaseSession } from '../session/lease-session.js';
import { Backoff } from '../util/backoff.js';
import { pause } from '../util/wait-signal.js';
import type { OwnKeys } from './own-keys.js';
import type { QueueContext } from './queue-context.js';
import { releaseRequest } from './queue-requests.js';

const RELEASE_RETRY_MIN_MS = 200;
const RELEASE_RETRY_MAX_MS = 2000;

/** A contender's key on its way out: what deleting it needs to know. */
export interface ReleasedKey {
  readonly ctx: QueueContext;
  readonly own: OwnKeys;
  readonly session: LeaseSession;
  readonly key: string;
  readonly keyBuf: Buffer;
  /** Whether a join was sent and not known to have left nothing: from then on the key may exist. */
  readonly mayExist: boolean;
  /** Its create revision, or 0 when the join that put it was never answered. */
  readonly revision: bigint;
  /** Whether a join went unanswered: etcd may still apply it, after this delete. */
  readonly joinInDoubt: boolean;
  /** Whether the key went with the session's lease already (lost or revoked): nothing left to delete. */
  readonly goneWithSession: () => boolean;
}

/**
 * Deletes a contender's key. The key is `<name prefix><lease hex>`: only this instance creates it, one caller at a
 * time, so a plain delete reaches our key and nothing else. A delete that goes unanswered may be applied later, so
 * the key name is retired for this lease (`OwnKeys`) and the retries are guarded by our create revision. A join
 * that failed but may have been applied left us without our revision: read it first. A join in doubt may still
 * land after all this: the name is retired, and watched until the session ends, so a late key is deleted at once.
 * Never rejects: while the session lives it retries, and once the session has ended the lease takes the key.
 */
export async function releaseKey(released: ReleasedKey): Promise<void> {
  const { ctx, own, session, keyBuf } = released;
  let revision = released.revision;
  let guarded = revision === 0n;
  let retired = false;
  /** The revision from which our key is known to be gone. */
  let goneAt: bigint | undefined;
  const retries = new Backoff(RELEASE_RETRY_MIN_MS, RELEASE_RETRY_MAX_MS);
  while (released.mayExist && session.alive && !released.goneWithSession()) {
    try {
      if (revision === 0n) {
        const res = await ctx.rpc.range({ key: keyBuf, keys_only: true }, `find '${ctx.name}'`);
        if (res.kvs.length === 0) {
          goneAt = BigInt(res.header.revision);
          break;
        }
        revision = BigInt(res.kvs[0].create_revision);
      }
      const res = guarded
        ? await ctx.rpc.txn(releaseRequest(keyBuf, revision), `release '${ctx.name}'`)
        : await ctx.rpc.deleteRange({ key: keyBuf }, `release '${ctx.name}'`);
      goneAt = BigInt(res.header.revision);
      break;
    } catch {
      if (!retired) own.retire(ctx.namePrefix);
      retired = true;
      guarded = true;
      await pause(retries.next());
    }
  }
  if (released.joinInDoubt) {
    if (!retired) own.retire(ctx.namePrefix);
    if (goneAt !== undefined) own.watchInDoubt(ctx.rpc, released.key, goneAt + 1n);
  }
}
