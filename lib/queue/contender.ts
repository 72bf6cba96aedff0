import type { ICompare, IKeyValue, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import { type FencedOutcome, type FenceHolder, FencedWrites } from './fenced-writes.js';
import type { DeleteSubscriber } from './delete-watch.js';
import type { QueueContext } from './queue-context.js';
import { EtcdUnavailableError, LockLostError, type LockLossReason } from '../errors.js';
import type { LeaseSession, SessionEndReason } from '../session/lease-session.js';
import { joinRequest, readJoin, resyncRequest } from './queue-requests.js';
import { OwnKeys } from './own-keys.js';
import { contendersAmong, isBusy } from './queue-reads.js';
import { isLeaseGone } from '../etcd/etcd-rpc.js';
import { type KeysAhead, type LossListener, NOBODY, QueuePlace } from './queue-place.js';
import { releaseKey } from './key-release.js';
import { Backoff } from '../util/backoff.js';
import { pause } from '../util/wait-signal.js';

const CHECK_RETRY_MIN_MS = 100;
const JOIN_SENT = 1;
const JOIN_IN_DOUBT = 2;
const WATCHING_OWN = 4;

/**
 * What a held contender does not need: a refused `joinIfFree`'s answer, fenced writes, keys to check, a re-read
 * under way, the leave under way. One object made at first use, not five fields on every contender (100,000 held
 * locks are 100,000 contenders).
 */
interface Rare {
  lastRefusal: ITxnResponse | undefined;
  fencedWrites: FencedWrites | undefined;
  gaps: Set<string> | undefined;
  rereading: { again: boolean } | undefined;
  leaving: Promise<void> | undefined;
}

/** No keys: the keys ahead a holder watches (shared by all of them). */
const NONE: readonly string[] = [];
const CHECK_RETRY_MAX_MS = 2000;

/**
 * One key in etcd's queue for a name (`<namePrefix><lease hex>`, etcd's own layout): joins with one request,
 * waits until every key created before it is deleted, owns the name, and leaves with one delete of its key (see
 * `deleteKey`). It watches its own key, and while it waits only the keys just ahead that it waits for (the one
 * just ahead for a lock, the `slots` just ahead for a semaphore, as etcd's `Mutex` does): a release wakes the
 * next in line, never every waiter. When one of those goes and it still waits, one read tells what is left.
 */
export class Contender implements DeleteSubscriber, FenceHolder {
  readonly key: string;
  /** Where we stand in the queue: the one state machine of a contender. */
  private readonly place: QueuePlace;
  private revision = 0n;
  /** `JOIN_SENT`, `JOIN_IN_DOUBT`, `WATCHING_OWN` (see their accessors): one field, not three. */
  private flags = 0;
  /** Our key's mod revision after the last request of ours that put it and was answered (a join). */
  private writtenAt = 0n;
  /** The keys just ahead whose deletions we are told of while we wait (a holder: none, a shared empty list). */
  private watchedAhead: readonly string[] = NONE;
  /** What few holds need (see `Rare`), made at first use. */
  private rare: Rare | undefined;

  constructor(
    private readonly ctx: QueueContext,
    readonly session: LeaseSession,
    private currentValue: string,
  ) {
    const own = OwnKeys.of(session);
    const tag = own.tag(ctx.namePrefix);
    this.key = ctx.namePrefix + (ctx.keyName?.(tag) ?? tag);
    own.claim(this.key);
    this.place = new QueuePlace(this);
    session.onEnd(this);
  }

  get name(): string {
    return this.ctx.name;
  }

  /** How many of the oldest keys hold, by our own count (see `slotsInForce`). Read, not kept: every field of a
   * contender is paid once per held lock. */
  private get slots(): number {
    return this.ctx.slots ?? 1;
  }

  /** The keys our session's lease may hold (one record per session, looked up, not kept: as `slots`). */
  private get own(): OwnKeys {
    return OwnKeys.of(this.session);
  }

  /** Set once a join request was sent: from then on our key may exist even if the request failed. */
  private get joinSent(): boolean {
    return this.has(JOIN_SENT);
  }

  private set joinSent(sent: boolean) {
    this.mark(JOIN_SENT, sent);
  }

  /** Set once a join went unanswered: etcd may apply it at any later time, even after we left (see `OwnKeys`). */
  private get joinInDoubt(): boolean {
    return this.has(JOIN_IN_DOUBT);
  }

  private set joinInDoubt(inDoubt: boolean) {
    this.mark(JOIN_IN_DOUBT, inDoubt);
  }

  /** Whether we are told of our own key's deletion. */
  private get watchingOwn(): boolean {
    return this.has(WATCHING_OWN);
  }

  private set watchingOwn(watching: boolean) {
    this.mark(WATCHING_OWN, watching);
  }

  private has(flag: number): boolean {
    return (this.flags & flag) !== 0;
  }

  private mark(flag: number, on: boolean): void {
    this.flags = on ? this.flags | flag : this.flags & ~flag;
  }

  /** The answer to a `joinIfFree` that found the name taken or its guard failing: what the guard's failure read. */
  get lastRefusal(): ITxnResponse | undefined {
    return this.rare?.lastRefusal;
  }

  private set lastRefusal(res: ITxnResponse) {
    this.rareFields().lastRefusal = res;
  }

  /** Keys whose watch may have missed revisions, to read (one request for all). */
  private get gaps(): Set<string> | undefined {
    return this.rare?.gaps;
  }

  private set gaps(keys: Set<string> | undefined) {
    if (keys || this.rare) this.rareFields().gaps = keys;
  }

  /** A re-read of the queue is under way, and whether another was asked for meanwhile. */
  private get rereading(): { again: boolean } | undefined {
    return this.rare?.rereading;
  }

  private set rereading(state: { again: boolean } | undefined) {
    if (state || this.rare) this.rareFields().rereading = state;
  }

  private rareFields(): Rare {
    this.rare ??= { lastRefusal: undefined, fencedWrites: undefined, gaps: undefined, rereading: undefined, leaving: undefined };
    return this.rare;
  }

  /** @internal The session ended: our key went (or goes) with its lease. */
  sessionEnded(reason: SessionEndReason): void {
    this.lose(reason === 'revoked' ? 'shutdown' : 'session-lost');
  }

  /** Our key as bytes, for a request (made when needed: one fewer Buffer per held lock). */
  get keyBuf(): Buffer {
    return Buffer.from(this.key);
  }

  get leaseId(): string {
    return this.session.id;
  }

  /**
   * Commits a transaction only while our key is ours and after every earlier write of ours (see `FencedWrites`),
   * leaving `value` (default: the current one) as our key's value.
   */
  commitFenced(compares: ICompare[], success: IRequestOp[], failure: IRequestOp[], value = this.currentValue): Promise<FencedOutcome> {
    const rare = this.rareFields();
    rare.fencedWrites ??= new FencedWrites(this, this.writtenAt);
    return rare.fencedWrites.commit(compares, success, failure, value);
  }

  /** The key's create revision: the fencing token. */
  get createRevision(): bigint {
    return this.revision;
  }

  get value(): string {
    return this.currentValue;
  }

  get isOwner(): boolean {
    return this.place.isOwner;
  }

  /** Why the key stopped being ours, once it did. */
  get lostError(): LockLostError | undefined {
    return this.place.lostError;
  }

  /**
   * Queues: puts our key, learning the keys ahead in the same request (one request).
   */
  async join(): Promise<void> {
    await this.put(false);
  }

  /**
   * Puts our key only if no key we would wait for exists (one request): `held` then, else `busy` and nothing is
   * left in etcd. With one slot only (see `joinsOnlyIfFree`).
   */
  async joinIfFree(): Promise<'held' | 'busy'> {
    return (await this.put(true)) ? 'busy' : 'held';
  }

  /** The join request, both ways; true when `onlyIfFree` found the name taken. */
  private async put(onlyIfFree: boolean): Promise<boolean> {
    this.joinSent = true;
    // Our key is read on its own only when it is outside the range we wait for and an earlier attempt of this join
    // went unanswered: that attempt may have put it, and its create revision is our place. A first attempt never
    // meets our key (every contender's key name is new: a sequence, or a name retired after a write in doubt).
    const outside = this.ctx.waitPrefix !== undefined && this.joinInDoubt;
    const res = await this.send(
      joinRequest(
        this.waitPrefix(),
        this.keyBuf,
        this.currentValue,
        this.session.id,
        onlyIfFree,
        outside,
        onlyIfFree ? this.ctx.joinGuard?.() : undefined,
      ),
      `join the queue of '${this.ctx.name}'`,
      true,
    );
    const revision = BigInt(res.header.revision);
    // Every branch puts our key but a taken name's with `onlyIfFree`: its mod revision is this request's.
    if (res.succeeded || !onlyIfFree) this.writtenAt = revision;
    // Our key read on its own (it is outside the range we wait for): the first attempt's, if a retry found it.
    const { own: ownKv, queue } = readJoin(res, onlyIfFree, outside);
    if (res.succeeded) {
      this.revision = ownKv ? BigInt(ownKv.create_revision) : revision;
      this.placeAt(NOBODY, revision);
      return false;
    }
    // Deletions meanwhile are kept by our place until we know who is ahead.
    const { keys: kvs, removed } = this.queueKeys(queue);
    await removed;
    if (onlyIfFree) {
      // A retried request whose first attempt was applied finds our own key: we own the name.
      const applied = outside ? ownKv : queue[0]?.key.equals(this.keyBuf) ? queue[0] : undefined;
      if (applied) {
        this.revision = BigInt(applied.create_revision);
        this.placeAt(NOBODY, revision);
        return false;
      }
      // The oldest key was no contender's (deeper under the name) or a stale one of ours: queue to know for sure
      // (not past a guard, which a plain join would not check: its failure is busy).
      if (queue.length > 0 && kvs.length === 0 && !this.ctx.joinGuard) return this.joinIfFirst();
      this.lastRefusal = res;
      this.joinSent = false;
      this.place.leave();
      this.dispose();
      return true;
    }
    const mine = ownKv ?? kvs.find((kv) => kv.key.equals(this.keyBuf));
    this.revision = mine ? BigInt(mine.create_revision) : revision;
    this.placeAt(keysOf(kvs.filter((kv) => BigInt(kv.create_revision) < this.revision)), revision);
    return false;
  }

  /** Whether every slot of the name is held or waited for now (one read; see `isBusy` in `queue-reads.ts`). */
  isBusy(): Promise<boolean> {
    return isBusy(this.ctx, this.own, this.waitPrefix(), this.slots);
  }

  /**
   * Whether `joinIfFree` can tell at once: with one slot a name is free when no key we would wait for exists (not
   * for a semaphore, whose limit in force may be another caller's).
   */
  get joinsOnlyIfFree(): boolean {
    return this.slots === 1 && this.ctx.slotsOf === undefined;
  }

  /** Queues, and leaves again unless our turn is now: `joinIfFree` when its one read could not tell. */
  private async joinIfFirst(): Promise<boolean> {
    await this.join();
    if (this.isOwner) return false;
    await this.leave();
    return true;
  }

  /** The contenders' keys among `kvs`, stale keys of ours removed first (see `contendersAmong`). */
  private queueKeys(kvs: IKeyValue[]): { keys: IKeyValue[]; removed: Promise<unknown> | undefined } {
    return contendersAmong(this.ctx, this.own, this.keyBuf, kvs);
  }

  /**
   * A request on our lease; etcd saying the lease is gone ends the session now, not at the next keepalive. A join
   * that goes unanswered is in doubt from then on (it may be applied later).
   */
  async send(req: ITxnRequest, what: string, isJoin = false): Promise<ITxnResponse> {
    try {
      return await this.ctx.rpc.txn(req, what);
    } catch (err) {
      if (isJoin && err instanceof EtcdUnavailableError) this.joinInDoubt = true;
      if (isLeaseGone(err)) {
        this.session.close('lease-expired');
        throw new LockLostError(this.ctx.name, 'session-lost', { cause: err });
      }
      throw err;
    }
  }

  /** Resolves when our key is among the `slots` oldest under the name. Rejects on abort (with its reason) or loss. */
  waitForTurn(signal?: AbortSignal): Promise<void> {
    return this.place.wait(signal);
  }

  /** Called once if the key stops being ours while we own it or wait. */
  onLoss(listener: LossListener): void {
    this.place.onLoss(listener);
  }

  /** Changes the value of our key without giving up our place (a fenced write); fails if the key is no longer ours. */
  async setValue(value: string): Promise<void> {
    const outcome = await this.commitFenced([], [], [], value);
    if ('lost' in outcome) {
      this.lose('key-deleted');
      throw this.lostError;
    }
    this.currentValue = value;
  }

  /**
   * Deletes our key (only if it is still ours) and stops listening. Never rejects: while the session lives it
   * retries, and once the session has ended the lease takes the key with it.
   */
  leave(): Promise<void> {
    const rare = this.rareFields();
    rare.leaving ??= this.deleteKey();
    return rare.leaving;
  }

  /** Marks the key lost (e.g. a fenced transaction found it gone). */
  lose(reason: LockLossReason): void {
    this.place.lose(reason);
  }

  /** Deletes our key if it may exist (see `releaseKey`), then stops listening. */
  private async deleteKey(): Promise<void> {
    const mayExist = this.joinSent && this.place.state !== 'left';
    this.place.leave();
    await releaseKey({
      ctx: this.ctx,
      own: this.own,
      session: this.session,
      key: this.key,
      keyBuf: this.keyBuf,
      revision: this.revision,
      mayExist,
      joinInDoubt: this.joinInDoubt,
      goneWithSession: () => {
        const reason = this.place.lostError?.reason;
        return reason === 'session-lost' || reason === 'shutdown';
      },
    });
    this.dispose();
  }

  /** Where the keys we wait for live: the whole name, or the part of it `ctx.waitPrefix` names. */
  private waitPrefix(): Buffer {
    return Buffer.from(this.ctx.waitPrefix ?? this.ctx.namePrefix);
  }

  private dispose(): void {
    if (this.watchingOwn) this.ctx.deletes.unsubscribe(this.key, this);
    for (const key of this.watchedAhead) this.ctx.deletes.unsubscribe(key, this);
    this.watchingOwn = false;
    this.watchedAhead = NONE;
    this.session.offEnd(this);
    this.own.disown(this.key);
  }

  /**
   * @internal How many of the oldest keys hold: our own `slots`, unless the context says the oldest key sets it (a
   * semaphore's limit in force is its oldest holder's, so a rolling deploy that changes it never fails a caller).
   */
  slotsInForce(ahead: KeysAhead): number {
    if (!this.ctx.slotsOf) return this.slots;
    const oldest: string | undefined = ahead.keys().next().value;
    return this.ctx.slotsOf(oldest ?? this.key);
  }

  /** The join answered at `revision` with these keys ahead of ours. */
  private placeAt(ahead: KeysAhead, revision: bigint): void {
    if (this.place.state !== 'joining') return;
    this.place.placed(ahead, revision);
    // Every deletion we must hear of comes after our join. A holder from the join on watches only its own key,
    // and later (see `DeleteWatch`); a waiter its own key and the keys it waits for, now.
    this.watchWhatBlocks(revision + 1n, this.place.isOwner);
  }

  /**
   * Watches our key (first: its answers come before the others' on the one stream) and, while we wait, the keys
   * just ahead that we wait for, from `from`; stops watching the rest.
   */
  private watchWhatBlocks(from: bigint, holder = false): void {
    const queued = this.place.isQueued;
    const ahead = queued && this.place.state === 'waiting' ? this.waitedFor() : NONE;
    const before = this.watchedAhead;
    this.watchedAhead = ahead;
    if (this.watchingOwn && !queued) this.ctx.deletes.unsubscribe(this.key, this);
    for (const key of before) if (!ahead.includes(key)) this.ctx.deletes.unsubscribe(key, this);
    if (!this.watchingOwn && queued) this.ctx.deletes.subscribe(this.key, this, from, holder);
    this.watchingOwn = queued;
    for (const key of ahead) if (!before.includes(key)) this.ctx.deletes.subscribe(key, this, from, holder);
  }

  /**
   * The keys whose deletion can give us our turn: the `slots` just ahead (the older ones can only go first or
   * with them), and one more, so that the waiter next in line has read the queue (after the deletion of the key
   * two ahead) before its turn comes and takes it on the event alone. All of them when fewer than twice the slots
   * are ahead (a waiter near the front of a semaphore then learns of each permit's release), or while keys ahead
   * ask for another number of slots (a semaphore's limit changing in a rolling deploy: whichever is oldest then
   * sets the slots).
   */
  private waitedFor(): string[] {
    const ahead = [...this.place.keysAhead.keys()];
    const slots = this.slotsInForce(this.place.keysAhead);
    const named = this.ctx.slotsNamedBy;
    if (ahead.length < 2 * slots || (named && ahead.some((key) => (named(key) ?? this.slots) !== this.slots))) return ahead;
    return ahead.slice(-(slots + 1));
  }

  /** @internal A key we watch was deleted at `revision`. */
  onDelete(key: string, revision: bigint): void {
    const waited = this.place.state === 'waiting' && key !== this.key;
    this.place.onDelete(key, revision);
    // Still waiting after a key we waited for went: older keys we did not watch may be gone too; read them.
    if (waited && this.place.state === 'waiting') this.reread();
    else this.watchWhatBlocks(this.place.asOf + 1n);
  }

  /** @internal The watch of `key` may have missed revisions since we knew it: read it (with any others). */
  onGap(key: string): void {
    if (key === this.key) this.place.unverified(true);
    this.gaps ??= new Set();
    this.gaps.add(key);
    // After the I/O at hand: the answers to the other watches made with this one usually come in the same read.
    if (this.gaps.size === 1) setImmediate(() => void this.checkGaps(new Backoff(CHECK_RETRY_MIN_MS, CHECK_RETRY_MAX_MS)));
  }

  /**
   * Reads the keys whose watch may have missed their deletion (taken from `gaps`, so a gap told meanwhile starts
   * a read of its own); a key gone, or made again, counts as deleted.
   */
  private async checkGaps(backoff: Backoff): Promise<void> {
    const keys = [...(this.gaps ?? [])];
    this.gaps = undefined;
    if (keys.length === 0 || !this.place.isQueued) return;
    try {
      const res = await this.ctx.rpc.txn(
        { compare: [], success: keys.map((key) => ({ request_range: { key: Buffer.from(key), keys_only: true } })) },
        `check the keys '${this.ctx.name}' waits for`,
      );
      const revision = BigInt(res.header.revision);
      keys.forEach((key, i) => {
        const kv = res.responses[i].response_range.kvs[0];
        const known = key === this.key ? this.revision : this.place.keysAhead.get(key);
        if (known !== undefined && (!kv || BigInt(kv.create_revision) !== known)) this.onDelete(key, revision);
      });
      // (A gap told meanwhile made a new set: read through the field, not this call's narrowing of it.)
      const toldMeanwhile = this.gaps as Set<string> | undefined;
      if (keys.includes(this.key) && !toldMeanwhile?.has(this.key)) this.place.unverified(false);
    } catch {
      // etcd unreachable: read again later; meanwhile our turn waits (the session deadline decides the rest).
      const toldMeanwhile = this.gaps as Set<string> | undefined;
      const retry = (toldMeanwhile?.size ?? 0) === 0;
      this.gaps = toldMeanwhile ?? new Set();
      for (const key of keys) this.gaps.add(key);
      if (retry) setTimeout(() => void this.checkGaps(backoff), backoff.next()).unref();
    }
  }

  /**
   * Re-reads our key and the keys ahead: after a key we waited for went with others ahead that we do not watch,
   * or after a watch restarted. Retried while etcd does not answer and we are still in the queue.
   */
  private reread(): void {
    if (this.rereading) {
      this.rereading.again = true;
      return;
    }
    const state = { again: false };
    this.rereading = state;
    void (async () => {
      const backoff = new Backoff(CHECK_RETRY_MIN_MS, CHECK_RETRY_MAX_MS);
      try {
        do {
          state.again = false;
          while (this.place.isQueued && !(await this.resync())) await pause(backoff.next());
        } while (state.again && this.place.isQueued);
      } finally {
        this.rereading = undefined;
      }
    })();
  }

  /** Reads what is ahead of us now; false when etcd did not answer. */
  private async resync(): Promise<boolean> {
    try {
      const res = await this.ctx.rpc.txn(
        resyncRequest(this.waitPrefix(), this.keyBuf, this.revision),
        `re-read the queue of '${this.ctx.name}'`,
      );
      const mine = res.responses[0].response_range.kvs[0];
      if (!mine || BigInt(mine.create_revision) !== this.revision) {
        this.lose('key-deleted');
        this.watchWhatBlocks(0n);
        return true;
      }
      const revision = BigInt(res.header.revision);
      this.place.resynced(keysOf(this.queueKeys(res.responses[1].response_range.kvs).keys), revision);
      this.watchWhatBlocks(revision + 1n);
      return true;
    } catch {
      return false;
    }
  }
}

/** Keys and their create revisions, in the order read (oldest first). */
function keysOf(kvs: ReadonlyArray<{ key: Buffer; create_revision: string }>): Map<string, bigint> {
  return new Map(kvs.map((kv) => [kv.key.toString(), BigInt(kv.create_revision)]));
}
