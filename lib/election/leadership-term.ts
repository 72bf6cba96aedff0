import { AsyncLocalStorage } from 'node:async_hooks';
import type { Contender } from '../queue/contender.js';
import { type LeadershipLossReason, LeadershipLostError, type LockLostError } from '../errors.js';
import { FencedTxn } from '../locks/fenced-txn.js';
import type { Leadership } from './leadership.interface.js';

/** The term of the `@LeaderOnly` run (or `@OnLeadership` call) running now, for `LeaderElectionService.current()`. */
export const leadershipContext = new AsyncLocalStorage<Leadership>();

/** How a lost election key ends the term it carried. */
export function termEndOf(err: LockLostError): LeadershipLossReason {
  if (err.reason === 'session-lost' || err.reason === 'shutdown') return err.reason;
  return 'key-deleted';
}

/** One term of this instance's leadership, over the contender whose key is the oldest in the election. */
export class LeadershipTerm implements Leadership {
  private readonly controller = new AbortController();

  constructor(
    readonly election: string,
    readonly identity: string,
    private readonly contender: Contender,
  ) {}

  get fencingToken(): bigint {
    return this.contender.createRevision;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get isLeader(): boolean {
    return !this.controller.signal.aborted && this.contender.isOwner;
  }

  fencedTxn(): FencedTxn {
    const contender = this.contender;
    const term = this;
    return new FencedTxn({
      contender,
      get held() {
        return term.isLeader;
      },
      lost(fenceFailed) {
        // A failed fence is the contender's loss, which ends the term (the campaign listens). Not held without one
        // means the term already ended, or the session's deadline passed before its end was told.
        if (fenceFailed) contender.lose('fence-failed');
        term.end('session-lost');
        return term.signal.reason as Error;
      },
    });
  }

  /** Ends the term (the first reason wins) and aborts its signal. */
  end(reason: LeadershipLossReason): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new LeadershipLostError(this.election, reason, this.fencingToken));
  }
}
