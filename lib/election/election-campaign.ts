import type { Logger } from '@nestjs/common';
import { BehaviorSubject, distinctUntilChanged, filter, map, type Observable } from 'rxjs';
import type { Clock, ClockTimer } from '../clock/clock.js';
import { createdAt } from '../etcd/requests.js';
import { Contender } from '../queue/contender.js';
import type { QueueContext } from '../queue/queue-context.js';
import { type LeadershipLossReason, type LeadershipLostError, NotLeaderError } from '../errors.js';
import { LeaderPreference } from './leader-preference.js';
import { type TransferTarget, transferLeadership } from './leadership-transfer.js';
import { EtcdLockEventName, type EtcdLockEvents } from '../events/etcd-lock.events.js';
import type { LeaseSession } from '../session/lease-session.js';
import { LeadershipTerm, termEndOf } from './leadership-term.js';
import type { EtcdSessionService } from '../session/session.service.js';
import { onAbort, sleep, whenAborted } from '../util/wait-signal.js';
import { Backoff } from '../util/backoff.js';
import { LogOnce } from '../util/log-once.js';
import { messageOf } from '../util/error-message.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

/**
 * This instance's candidacy in one election: a key under `<prefix>election/<name>/` on the session lease, whose
 * value is the instance identity; the oldest key leads (etcd's own layout, as `etcdctl elect`). Once started, it
 * keeps campaigning: after a lost session it campaigns again on the new one, until `stop()`.
 */
export class ElectionCampaign {
  private contender: Contender | undefined;
  private active = false;
  /** Set by `stop('resigned')`: only an explicit `start(true)` campaigns again. */
  private resigned = false;
  /** Which start the loop running now serves: a loop of an earlier one ends at its next turn. */
  private generation = 0;
  private running: Promise<void> | undefined;
  /** Our priority key and the election key it stands beside, once written. */
  private announced: { readonly priorityKey: Buffer; readonly electionKey: Buffer } | undefined;
  private stopWaiting: AbortController | undefined;
  /** The term in progress while this instance leads, else undefined. */
  private readonly current = new BehaviorSubject<LeadershipTerm | undefined>(undefined);
  private readonly retry = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  private readonly failure: LogOnce;

  constructor(
    private readonly sessions: EtcdSessionService,
    private readonly ctx: QueueContext,
    private readonly identity: string,
    private readonly logger: Logger,
    private readonly events: EtcdLockEvents,
    /** Resolves once the leader-only work of this election has ended (bounded): before a transfer. */
    private readonly drained: () => Promise<unknown>,
    /** This instance's `leaderPriority` and where the election's priorities live, if it has one. */
    private readonly preference: { readonly priority: number; readonly root: string } | undefined,
    /** The `maxTermMs` bound of every term, if any, and the clock it runs on. */
    private readonly maxTermMs: number | undefined,
    private readonly clock: Clock,
  ) {
    this.failure = new LogOnce((message) => this.logger.warn(message));
  }

  get name(): string {
    return this.ctx.name;
  }

  /** Synchronous, from local state: false as soon as the term ends or the session's local deadline passes. */
  get isLeader(): boolean {
    return this.current.value?.isLeader ?? false;
  }

  /** The term in progress, if this instance leads now. */
  get term(): LeadershipTerm | undefined {
    return this.isLeader ? this.current.value : undefined;
  }

  get campaigning(): boolean {
    return this.active;
  }

  /** This instance's own leadership over time. */
  changes(): Observable<boolean> {
    return this.current.pipe(
      map((term) => term !== undefined),
      distinctUntilChanged(),
    );
  }

  /** Each term of this instance's, as it starts (the one in progress first, if any). */
  terms(): Observable<LeadershipTerm> {
    return this.current.pipe(filter((term): term is LeadershipTerm => term !== undefined));
  }

  /** Ends the term in progress (its signal aborts) without leaving the election yet: the first step of shutdown. */
  endTerm(reason: LeadershipLossReason): void {
    this.current.value?.end(reason);
  }

  /**
   * Starts campaigning (no-op if already). After `stop('resigned')`, only an `explicit` start campaigns again
   * (`campaign()`, not a read of leadership). A loop still stopping finishes first (its key deleted): one loop,
   * one key, whatever the order of calls.
   */
  start(explicit = false): void {
    if (this.active || (this.resigned && !explicit)) return;
    this.resigned = false;
    this.active = true;
    const generation = ++this.generation;
    const previous = this.running;
    const running: Promise<void> = (async () => {
      await previous;
      if (this.active && this.generation === generation) await this.run(generation);
    })().finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
  }

  /** Ends the term (if leading), stops campaigning and deletes our key, so a standby leads at once. */
  async stop(reason: 'resigned' | 'shutdown' = 'resigned'): Promise<void> {
    // The loop of now: a start() meanwhile chains a new one after it, which this stop does not wait for.
    const running = this.running;
    this.endTerm(reason);
    if (reason === 'resigned') this.resigned = true;
    this.active = false;
    this.stopWaiting?.abort();
    await this.contender?.leave();
    await running;
    if (!this.active) await this.withdrawPriority();
  }

  /**
   * Hands the leadership to candidate `to` (or the next in line) with no election in between (see
   * `transferLeadership`): the term ends (reason `transferred`) and `drained()` resolves before the hand-over;
   * this instance then campaigns again behind. `NotLeaderError` unless leading; `UnknownCandidateError` (and the
   * term goes on) when there is no such candidate.
   */
  async transfer(to: TransferTarget): Promise<string | null> {
    const term = this.term;
    const contender = this.contender;
    if (!term || !contender) throw new NotLeaderError(this.name);
    return transferLeadership(this.ctx, contender, to, async () => {
      term.end('transferred');
      await this.drained();
    });
  }

  /** Completes the leadership stream; call once the campaign is stopped for good. */
  close(): void {
    this.current.complete();
  }

  private async run(generation: number): Promise<void> {
    const current = () => this.active && this.generation === generation;
    while (current()) {
      const session = await this.nextSession();
      if (!session || !current()) return;
      const contender = new Contender(this.ctx, session, this.identity);
      this.contender = contender;
      let term: LeadershipTerm | undefined;
      let preference: LeaderPreference | undefined;
      let bound: ClockTimer | undefined;
      // The term ends in the same tick as the loss is known: at the local deadline, before etcd can elect another.
      const lost = new Promise<void>((resolve) =>
        contender.onLoss((err) => {
          term?.end(termEndOf(err));
          resolve();
        }),
      );
      this.stopWaiting = new AbortController();
      try {
        await contender.join();
        await this.announcePriority(contender);
        await contender.waitForTurn(this.stopWaiting.signal);
        if (!current()) continue;
        this.retry.reset();
        this.failure.reset();
        const started = new LeadershipTerm(this.name, this.identity, contender);
        term = started;
        // However the term ends, this instance stops being leader at that moment (its key may stay until stop()).
        onAbort(started.signal, () => this.setTerm(undefined, started));
        this.setTerm(started);
        preference = this.preferring();
        bound = this.bounded(started, contender);
        // A term ended by endTerm() keeps its key until stop(): the work it guarded ends before another can lead.
        await Promise.race([lost, whenAborted(this.stopWaiting.signal)]);
      } catch (err) {
        if (current() && !contender.lostError) await this.backOff(err);
      } finally {
        bound?.cancel();
        await preference?.stop();
        term?.end('resigned'); // no-op unless it ended some other way already
        this.setTerm(undefined, term);
        await contender.leave();
        if (this.contender === contender) this.contender = undefined;
      }
    }
  }

  /**
   * With a `leaderPriority`: writes it beside our election key, on the same lease (the leader matches them by
   * lease), only while that key is ours: a write applied late, after the key left, writes nothing.
   */
  private async announcePriority(contender: Contender): Promise<void> {
    if (!this.preference) return;
    const lease = contender.key.slice(contender.key.lastIndexOf('/') + 1);
    const key = Buffer.from(`${this.preference.root}${lease}`);
    this.announced = { priorityKey: key, electionKey: Buffer.from(contender.key) };
    try {
      await this.ctx.rpc.txn(
        {
          compare: [createdAt(Buffer.from(contender.key), contender.createRevision)],
          success: [{ request_put: { key, value: Buffer.from(String(this.preference.priority)), lease: BigInt(`0x${lease}`).toString() } }],
        },
        `write the leader priority in election '${this.name}'`,
      );
    } catch (err) {
      // Campaigning goes on without it: a leader just does not know to prefer us.
      this.failure.report(() => `Could not write the leader priority in election '${this.name}': ${messageOf(err)}`);
    }
  }

  /**
   * Deletes our priority once we no longer campaign, only while no election key of ours exists (a delete applied
   * late cannot take the priority of a later campaign). If it fails, the key goes with the session's lease.
   */
  private async withdrawPriority(): Promise<void> {
    const announced = this.announced;
    if (!announced) return;
    this.announced = undefined;
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        await this.ctx.rpc.txn(
          { compare: [createdAt(announced.electionKey, 0n)], success: [{ request_delete_range: { key: announced.priorityKey } }] },
          `delete the leader priority in election '${this.name}'`,
        );
        return;
      } catch {
        // Repeating it is safe (guarded as above); after three tries the lease takes the key.
        await sleep(this.retry.next()).catch(() => undefined);
      }
    }
  }

  /**
   * With `maxTermMs`: when it passes, the term ends at once (`max-hold`), then, once its work drained, the next
   * candidate is handed the leadership (or, alone, our key goes and a new term of ours begins). A hand-over that
   * fails is tried again until it is done or our key is gone: an ended term must not keep the key.
   */
  private bounded(term: LeadershipTerm, contender: Contender): ClockTimer | undefined {
    if (this.maxTermMs === undefined) return undefined;
    return this.clock.setTimer(
      () => {
        if (this.term !== term) return;
        term.end('max-hold');
        void (async () => {
          for (;;) {
            try {
              await transferLeadership(this.ctx, contender, undefined, () => this.drained().then(() => undefined), true);
              return;
            } catch (err) {
              if (!contender.isOwner) return;
              this.failure.report(() => `Ending the term in election '${this.name}' at maxTermMs failed, retrying: ${messageOf(err)}`);
              await sleep(this.retry.next()).catch(() => undefined);
            }
          }
        })();
      },
      this.maxTermMs,
      { unref: true },
    );
  }

  /** While leading with a `leaderPriority`: hand over to a candidate that outranks us. */
  private preferring(): LeaderPreference | undefined {
    if (!this.preference) return undefined;
    const preference = new LeaderPreference(this.ctx, this.preference.root, this.preference.priority, async (key) => {
      this.logger.log(`Election '${this.name}': a candidate of a higher priority joined; handing over`);
      await this.transfer({ key }).catch((err: unknown) =>
        this.failure.report(() => `Hand-over in election '${this.name}' failed: ${messageOf(err)}`),
      );
    });
    preference.start();
    return preference;
  }

  private setTerm(term: LeadershipTerm | undefined, ended?: LeadershipTerm): void {
    if (this.current.value === term) return;
    const leader = term !== undefined;
    const token = (term ?? ended)?.fencingToken;
    this.logger.log(`${leader ? 'Leadership gained' : 'Leadership ended'} in election '${this.name}' (${this.identity}, term ${token})`);
    this.current.next(term);
    const reason = leader ? undefined : (ended?.signal.reason as LeadershipLostError | undefined)?.reason;
    this.events.emit({
      type: EtcdLockEventName.LeadershipChanged,
      election: this.name,
      leader,
      fencingToken: token,
      ...(reason ? { reason } : {}),
    });
  }

  /** The live session, or the next one granted; undefined if the campaign stops first. */
  private nextSession(): Promise<LeaseSession | undefined> {
    const stop = new AbortController();
    this.stopWaiting = stop;
    return this.sessions.nextSession(stop.signal);
  }

  private async backOff(err: unknown): Promise<void> {
    this.failure.report(() => `Campaign in election '${this.name}' failed, retrying: ${messageOf(err)}`);
    // Cut short (not failed) when the campaign stops.
    await sleep(this.retry.next(), this.stopWaiting?.signal).catch(() => undefined);
  }
}
