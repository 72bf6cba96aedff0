import type { ICompare, IOperation, IRequestOp, ITxnResponse } from 'etcd3';
import type { Contender } from '../queue/contender.js';
import { InvalidArgumentError, LockLostError } from '../errors.js';
import { CompareResult, CompareTarget } from '../etcd/requests.js';

/** What a comparison looks at, as in etcd3's `client.if(key, column, cmp, value)`. */
export type TxnColumn = 'Value' | 'Version' | 'Create' | 'Mod' | 'Lease';
/** How `if()` compares the column with the value. */
export type TxnComparison = '==' | '!=' | '<' | '>';
/** An operation: an etcd3 builder such as `client.put(k).value(v)`, or a raw etcd request op. */
export type TxnOperation = IOperation | IRequestOp;

const results: Record<TxnComparison, CompareResult> = {
  '==': CompareResult.Equal,
  '!=': CompareResult.NotEqual,
  '<': CompareResult.Less,
  '>': CompareResult.Greater,
};
const fields: Record<TxnColumn, string> = {
  Value: 'value',
  Version: 'version',
  Create: 'create_revision',
  Mod: 'mod_revision',
  Lease: 'lease',
};

/** @internal What a fenced transaction is fenced on: a lock, or a leadership term. */
export interface Fence {
  readonly contender: Contender;
  /** Whether the holder still holds (from local state). */
  readonly held: boolean;
  /** The error to throw once it does not; `fenceFailed`: a commit just found the key is no longer ours. */
  lost(fenceFailed: boolean): Error;
}

/** @internal The fence of a lock: its contender, whose loss is the lock's. */
export function lockFence(contender: Contender): Fence {
  return {
    contender,
    get held() {
      return contender.isOwner;
    },
    lost(fenceFailed) {
      if (fenceFailed) contender.lose('fence-failed');
      return contender.lostError ?? new LockLostError(contender.name, fenceFailed ? 'fence-failed' : 'session-lost');
    },
  };
}

/**
 * An etcd transaction that commits only while the lock (or leadership term, permit, shard) is held, and never after
 * a later fenced write of the same holder: its first comparisons are "the holder's key still exists with our create
 * revision" and "no write of ours has moved it since our last answered one", and it puts the holder's key again
 * (see `FencedWrites`), so the holder's key must not be among your operations. Commits of one holder go one at a
 * time. If the key is no longer ours, `commit()` throws `LockLostError` and the lock's signal aborts. Keys here are
 * full etcd keys (the lock's `prefix` is not added).
 */
export class FencedTxn {
  private readonly compares: object[] = [];
  private readonly success: TxnOperation[] = [];
  private readonly failure: TxnOperation[] = [];

  /** @internal Get one from `lock.fencedTxn()` or `leadership.fencedTxn()`. */
  constructor(private readonly fence: Fence) {}

  /** Adds a comparison; all must hold for `do` to run. */
  if(key: string, column: TxnColumn, cmp: TxnComparison, value: string | number | bigint): this {
    if (typeof key !== 'string' || key === '') throw new InvalidArgumentError('key', 'must be a non-empty string');
    const field = fields[column];
    if (!(column in fields)) throw new InvalidArgumentError('column', `must be one of ${Object.keys(fields).join(', ')}`);
    if (!(cmp in results)) throw new InvalidArgumentError('cmp', `must be one of ${Object.keys(results).join(' ')}`);
    const v = column === 'Value' ? Buffer.from(String(value)) : String(value);
    this.compares.push({ key: Buffer.from(key), target: CompareTarget[column], result: results[cmp], [field]: v });
    return this;
  }

  /**
   * Operations to run when the lock is held and every comparison holds. (Not named `then`, as in etcd3: a
   * `then` method would make this object a thenable that `await` calls and never settles.)
   */
  do(...ops: TxnOperation[]): this {
    this.success.push(...ops);
    return this;
  }

  /** Operations to run when the lock is held but a comparison of yours fails. */
  orElse(...ops: TxnOperation[]): this {
    this.failure.push(...ops);
    return this;
  }

  /** Shorthand for `do` with a put of `value` at `key`. */
  put(key: string, value: string): this {
    return this.do({ request_put: { key: Buffer.from(key), value: Buffer.from(value) } });
  }

  /**
   * Commits. Throws `LockLostError` (a lock) or `LeadershipLostError` (a term), and aborts its signal, when it is
   * no longer held.
   */
  async commit(): Promise<ITxnResponse> {
    if (!this.fence.held) throw this.fence.lost(false);
    const [success, failure] = await Promise.all([resolveOps(this.success), resolveOps(this.failure)]);
    const outcome = await this.fence.contender.commitFenced(this.compares as ICompare[], success, failure);
    if ('lost' in outcome) throw this.fence.lost(true);
    return outcome.res;
  }
}

function resolveOps(ops: TxnOperation[]): Promise<IRequestOp[]> {
  return Promise.all(ops.map((op) => ('op' in op && typeof op.op === 'function' ? op.op() : (op as IRequestOp))));
}
