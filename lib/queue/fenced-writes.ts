import type { ICompare, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import { fenceCompare } from './queue-requests.js';
import { modifiedAt } from '../etcd/requests.js';

/** What fenced writes need of the holder whose key fences them. */
export interface FenceHolder {
  readonly keyBuf: Buffer;
  /** Our key's create revision: the fencing token. */
  readonly createRevision: bigint;
  readonly leaseId: string;
  send(req: ITxnRequest, what: string): Promise<ITxnResponse>;
}

/** How a fenced write ended: etcd's answer (the caller's compares held or not), or the key is no longer ours. */
export type FencedOutcome = { readonly res: ITxnResponse } | { readonly lost: true };

/** More is never expected: only writes of ours change our key's mod revision, and they go one at a time. */
const MAX_ATTEMPTS = 8;

/**
 * The fenced writes of one holder (a lock, permit, term or shard), one at a time. Fencing by create revision keeps
 * every *other* holder's stale write out, but not our own: a write of ours whose answer was lost may be applied
 * later, after writes we made since (a stall that delivers it late), and undo them. So each fenced write also
 * compares our key's mod revision with the one our last answered write left, and puts our key again, which moves
 * it on: once a write of ours has applied, no earlier one still in flight can. When the mod revision moved without
 * us knowing (a write of ours in doubt landed first), the write is sent again against the new one: it then lands
 * after that one, in the order it was made.
 */
export class FencedWrites {
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly holder: FenceHolder,
    /** Our key's mod revision as our last write that etcd answered left it. */
    private modRevision: bigint,
  ) {}

  /** A request of ours that etcd answered put our key at `revision` (a join, or a fenced write). */
  written(revision: bigint): void {
    this.modRevision = revision;
  }

  /**
   * Commits `compares` → `success` / `failure` while our key is ours, with `value` as our key's value from then on.
   * The responses are the caller's ops' only.
   */
  commit(compares: ICompare[], success: IRequestOp[], failure: IRequestOp[], value: string): Promise<FencedOutcome> {
    const run = this.last.then(
      () => this.send(compares, success, failure, value),
      () => this.send(compares, success, failure, value),
    );
    this.last = run.catch(() => undefined);
    return run;
  }

  private async send(compares: ICompare[], success: IRequestOp[], failure: IRequestOp[], value: string): Promise<FencedOutcome> {
    const { keyBuf: key, createRevision, leaseId } = this.holder;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const res = await this.holder.send(
        {
          compare: [fenceCompare(key, createRevision), modCompare(key, this.modRevision), ...compares],
          success: [...success, { request_put: { key, value: Buffer.from(value), lease: leaseId } }],
          // Appended so that one request tells "no longer ours" and "a write of ours landed" from "your compare failed".
          failure: [...failure, { request_range: { key, keys_only: true } }],
        },
        'commit a fenced transaction',
      );
      const ours = { ...res, responses: res.responses.slice(0, -1) };
      if (res.succeeded) {
        this.modRevision = BigInt(res.header.revision);
        return { res: ours };
      }
      const mine = res.responses[res.responses.length - 1].response_range.kvs[0];
      if (!mine || BigInt(mine.create_revision) !== createRevision) return { lost: true };
      const mod = BigInt(mine.mod_revision);
      if (mod === this.modRevision) return { res: ours };
      this.modRevision = mod;
    }
    return { lost: true };
  }
}

function modCompare(key: Buffer, modRevision: bigint): ICompare {
  return modifiedAt(key, modRevision);
}
