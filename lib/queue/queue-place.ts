import { EtcdLockError, LockLostError, type LockLossReason } from '../errors.js';
import type { LeaseSession } from '../session/lease-session.js';
import { onAbort } from '../util/wait-signal.js';
import { settled } from '../util/settle-once.js';

/**
 * Where a contender stands, one state at a time:
 * - `joining`: the join request is not answered yet;
 * - `waiting`: our key is in, behind `ahead`;
 * - `owner`: fewer keys than the slots in force are ahead of ours;
 * - `left`: we left, or never got in (a `joinIfFree` that found the name taken);
 * - `lost`: the key stopped being ours while we waited or owned (`lostError` says why).
 */
export type PlaceState = 'joining' | 'waiting' | 'owner' | 'left' | 'lost';

/** Keys ahead of ours, oldest first, with their create revisions. */
export type KeysAhead = ReadonlyMap<string, bigint>;

/** "No key ahead", shared by every owner (never added to; deleting from it is a no-op). */
export const NOBODY: KeysAhead = new Map();

/** What a place knows of its contender. */
export interface PlaceHost {
  readonly name: string;
  /** Our key. */
  readonly key: string;
  /** Whether the session is alive by our clock: an owner's turn never resolves without it. */
  readonly session: Pick<LeaseSession, 'alive'>;
  /** How many of the oldest keys hold, given the keys ahead (see `Contender.slotsInForce`). */
  slotsInForce(ahead: KeysAhead): number;
}

/** Told once if the key stops being ours: a function, or an object (a held lock listens itself: no closure each). */
export type LossListener = ((err: LockLostError) => void) | { keyLost(err: LockLostError): void };

/**
 * Our own copy of `ahead`, which deletions then shrink: the shared empty map when no key is ahead (an owner's
 * usual case; an empty Map costs about 370 bytes, and 100,000 held locks would each keep one).
 */
function copyOf(ahead: KeysAhead): Map<string, bigint> {
  return ahead.size === 0 ? (NOBODY as Map<string, bigint>) : new Map(ahead);
}

/**
 * A contender's place in its name's queue: which keys are ahead of ours as of which revision, the one caller
 * waiting for our turn, and the loss listener. It sends nothing; the contender feeds it what etcd answered and
 * what the deletion watches of the keys it waits for told.
 */
export class QueuePlace {
  private current: PlaceState = 'joining';
  /**
   * Keys created before ours that existed as of `snapshot`, oldest first; the ones nobody watches may be gone
   * since (an overestimate: it only ever delays our turn).
   */
  private ahead = NOBODY as Map<string, bigint>;
  private snapshot = 0n;
  private waiter: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  /** Our key's watch may have missed its deletion, and the read that tells is not answered yet: no turn till then. */
  private ownKeyInDoubt = false;
  private lossListener: LossListener | undefined;
  lostError: LockLostError | undefined;

  /** The contender whose place it is (one reference, not four fields: one place per held lock). */
  constructor(private readonly host: PlaceHost) {}

  private get name(): string {
    return this.host.name;
  }

  get state(): PlaceState {
    return this.current;
  }

  /** The revision our view of the queue is as of: deletions at or before it are already counted. */
  get asOf(): bigint {
    return this.snapshot;
  }

  get isOwner(): boolean {
    return this.current === 'owner' && this.host.session.alive;
  }

  /** Whether we might be in the queue (waiting or owning): what a resync re-reads. */
  get isQueued(): boolean {
    return this.current === 'waiting' || this.current === 'owner';
  }

  /** The keys ahead of ours as last known, oldest first. */
  get keysAhead(): KeysAhead {
    return this.ahead;
  }

  /** The join answered: these keys were ahead of ours at `revision`. */
  placed(ahead: KeysAhead, revision: bigint): void {
    if (this.current !== 'joining') return;
    this.snapshot = revision;
    this.ahead = copyOf(ahead);
    this.current = 'waiting';
    this.ownIfFirst();
  }

  /** The queue was read again at `revision` (keys we did not watch may be gone, or a watch missed revisions). */
  resynced(ahead: KeysAhead, revision: bigint): void {
    if (!this.isQueued) return;
    this.snapshot = revision;
    this.ahead = copyOf(ahead);
    this.ownIfFirst();
  }

  /** A deletion of our key or of a key ahead, at `revision` (or found gone by a read at `revision`). */
  onDelete(key: string, revision: bigint): void {
    if (revision <= this.snapshot || !this.isQueued) return;
    // etcd reports our key deleted: we own nothing from now on, reported within this event's handling, before
    // anyone else can act on the name. Whoever deleted it (someone else, or etcd revoking or expiring our lease).
    if (key === this.host.key) this.lose('key-deleted');
    else if (this.ahead.delete(key)) this.ownIfFirst();
  }

  /** Whether our own key's deletion may have been missed (a watch that started late); the turn waits for the read. */
  unverified(inDoubt: boolean): void {
    this.ownKeyInDoubt = inDoubt;
    if (!inDoubt) this.ownIfFirst();
  }

  /** Resolves when we own. Rejects on abort (with its reason), on loss, or when we leave. */
  wait(signal?: AbortSignal): Promise<void> {
    if (this.current === 'owner') {
      // Owner by etcd, but also by our clock: the session may have run out since (a pause).
      if (this.host.session.alive) return Promise.resolve();
      this.lose('session-lost');
    }
    if (this.current === 'lost') return Promise.reject(this.lostError ?? new LockLostError(this.name, 'session-lost'));
    if (this.current !== 'waiting') return Promise.reject(new EtcdLockError(`'${this.name}' is not queued`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return settled((settle) => {
      this.waiter = { resolve: () => settle.resolve(), reject: (err) => settle.reject(err) };
      settle.onEnd(
        onAbort(signal, (reason) => {
          this.waiter = undefined;
          settle.reject(reason);
        }),
      );
    });
  }

  /** Called once if the key stops being ours while we own it or wait. */
  onLoss(listener: LossListener): void {
    this.lossListener = listener;
  }

  /** The key stopped being ours (or never was, for a waiter whose session ended). */
  lose(reason: LockLossReason): void {
    if (this.current === 'left' || this.current === 'lost') return;
    const err = new LockLostError(this.name, reason);
    this.lostError = err;
    this.current = 'lost';
    this.settleWaiter((waiter) => waiter.reject(err));
    const listener = this.lossListener;
    if (typeof listener === 'function') listener(err);
    else listener?.keyLost(err);
  }

  /** We leave (or never got in): a waiter is told so. A lost place stays lost, for its reason. */
  leave(): void {
    if (this.current !== 'lost') this.current = 'left';
    this.settleWaiter((waiter) => waiter.reject(new EtcdLockError(`left the queue of '${this.name}'`)));
  }

  /**
   * Owns if few enough keys are ahead. After a process pause the watch event can be handled before the expired
   * deadline timer fires: the session is checked against the clock now, so a waiter whose lease ran out never
   * resolves.
   */
  private ownIfFirst(): void {
    if (this.current !== 'waiting' || this.ownKeyInDoubt || this.ahead.size >= this.host.slotsInForce(this.ahead)) return;
    if (!this.host.session.alive) {
      this.lose('session-lost');
      return;
    }
    this.current = 'owner';
    this.settleWaiter((waiter) => waiter.resolve());
  }

  private settleWaiter(settle: (waiter: { resolve: () => void; reject: (err: unknown) => void }) => void): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) settle(waiter);
  }
}
