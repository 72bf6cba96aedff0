import type { IKeyValue, IWatchResponse } from 'etcd3';
import type { PortWatcher, WatchSink } from '../etcd/etcd-port.js';

/** Told of the deletion of a key it watches, and asked to check the key when the watch may have missed one. */
export interface DeleteSubscriber {
  onDelete(key: string, revision: bigint): void;
  /**
   * The watch of `key` does not cover every revision since the one the subscriber asked for (it was made "from
   * now", after that revision; or etcd cancelled it and it started over): read the key to know if it is gone.
   */
  onGap(key: string): void;
}

/** `KeyWatch.holderOnly` while a waiter asked for the watch since the key was last left. */
export const WANTED = -1;

/** One subscriber, and the first revision it must hear of. */
export interface Subscription {
  readonly subscriber: DeleteSubscriber;
  readonly from: bigint;
}

/** What a key's watch tells the `DeleteWatch` that owns it. */
export interface KeyWatchOwner {
  /** The watch reports every deletion from `coveredFrom` on. */
  covered(entry: KeyWatch, coveredFrom: bigint): void;
  deleted(entry: KeyWatch, revision: bigint): void;
  /** etcd cancelled the watch (it tells nothing more). */
  failed(entry: KeyWatch, err: unknown): void;
}

/**
 * The watch of one key and who listens to it, and the sink its watch tells directly. One object per key: a held
 * lock watches its own key, so 100,000 held locks are 100,000 of these, and every field counts (no listener
 * closures, no map from watcher to key, and the first subscriber inline: most keys have one).
 */
export class KeyWatch implements WatchSink {
  watcher: PortWatcher | undefined;
  /** The first revision the watcher reports: known at creation for a replay, at `connected` for "from now". */
  coveredFrom: bigint | undefined;
  /** Where the current watcher replays from; 0n for "from now" (its answer's header tells). */
  replayFrom = 0n;
  /** The revision of the last deletion the watcher reported: told to a subscriber that comes later. */
  lastDelete = 0n;
  linger: NodeJS.Timeout | undefined;
  /**
   * Times in a row the key was left with no waiter since the time before; `WANTED` (-1) while a waiter asked for the
   * watch since the key was last left (one field for both).
   */
  holderOnly = 0;
  /** A watch to create later (a holder's), from the oldest revision asked for, at `due` (the clock's monotonic ms). */
  deferred: { from: bigint; due: number } | undefined;
  private subscriber: DeleteSubscriber | undefined;
  private from = 0n;
  private more: Subscription[] | undefined;

  constructor(
    readonly key: string,
    private readonly owner: KeyWatchOwner,
  ) {}

  /** Number of subscribers. */
  get size(): number {
    return (this.subscriber ? 1 : 0) + (this.more?.length ?? 0);
  }

  add(subscriber: DeleteSubscriber, from: bigint): void {
    if (!this.subscriber) {
      this.subscriber = subscriber;
      this.from = from;
    } else this.more = [...(this.more ?? []), { subscriber, from }];
  }

  /** Removes `subscriber`; false if it was not subscribed. */
  remove(subscriber: DeleteSubscriber): boolean {
    if (this.subscriber === subscriber) {
      const next = this.more?.shift();
      this.subscriber = next?.subscriber;
      this.from = next?.from ?? 0n;
      if (this.more?.length === 0) this.more = undefined;
      return true;
    }
    const index = this.more?.findIndex((s) => s.subscriber === subscriber) ?? -1;
    if (index < 0) return false;
    this.more?.splice(index, 1);
    if (this.more?.length === 0) this.more = undefined;
    return true;
  }

  /** The subscription of `subscriber` now, if any. */
  subscriptionOf(subscriber: DeleteSubscriber): Subscription | undefined {
    if (this.subscriber === subscriber) return { subscriber, from: this.from };
    return this.more?.find((s) => s.subscriber === subscriber);
  }

  /** The subscriptions now (a copy: a subscriber told of a deletion may unsubscribe). */
  subscriptions(): Subscription[] {
    const first = this.subscriber ? [{ subscriber: this.subscriber, from: this.from }] : [];
    return this.more ? [...first, ...this.more] : first;
  }

  /** @internal Watch sink: a watcher told again after a reconnect (it resumes where it was) changes nothing. */
  connected(res: IWatchResponse): void {
    if (this.coveredFrom !== undefined) return;
    this.owner.covered(this, this.replayFrom === 0n ? BigInt(res.header.revision) + 1n : this.replayFrom);
  }

  /** @internal Watch sink. */
  event(type: 'put' | 'delete', kv: IKeyValue): void {
    if (type === 'delete') this.owner.deleted(this, BigInt(kv.mod_revision));
  }

  /** @internal Watch sink. */
  error(err: unknown): void {
    this.owner.failed(this, err);
  }
}
