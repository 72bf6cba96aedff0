import { ConsoleLogger, type INestApplicationContext, Injectable, Scope } from '@nestjs/common';
import { Subject, filter, firstValueFrom } from 'rxjs';
import {
  EtcdLockError,
  EtcdLockEventName,
  EtcdLockEvents,
  InvalidArgumentError,
  type Leadership,
  LeaderElectionService,
  LeaderOnly,
  LeadershipLostError,
  OnLeadership,
} from '../lib/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { onAbort } from '../lib/util/wait-signal.js';
import { EtcdSessionService } from '../lib/session/session.service.js';
import { useEtcd } from './harness/fixtures.js';

const etcd = useEtcd();

const electionOf = (app: INestApplicationContext) => app.get(LeaderElectionService);
const leads = (app: INestApplicationContext, name?: string) => firstValueFrom(electionOf(app).changes(name).pipe(filter(Boolean)));
/** `identity`'s key in the election, read from etcd. */
async function keyOf(identity: string, election = 'leader') {
  const { kvs } = await etcd.client.kv.range({
    key: Buffer.from(`election/${election}/`),
    range_end: Buffer.from(`election/${election}0`),
  });
  const mine = kvs.find((kv) => kv.value.toString() === identity);
  if (!mine) throw new Error(`no key of ${identity} in election ${election}`);
  return { key: mine.key.toString(), createRevision: BigInt(mine.create_revision) };
}

@Injectable()
class LeaderJob {
  readonly terms: Array<Leadership | undefined> = [];

  @LeaderOnly()
  run(): string {
    this.terms.push(LeaderElectionService.current());
    return 'ran';
  }

  /** A long run that ends when its term does. */
  @LeaderOnly()
  async untilDeposed(): Promise<unknown> {
    const term = LeaderElectionService.current() as Leadership;
    this.terms.push(term);
    return whenAborted(term.signal);
  }
}

describe('Leadership terms', () => {
  it('a @LeaderOnly run sees its term: the election key create revision as fencing token, aborted never while it leads', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [LeaderJob]);
    await leads(a);
    const b = await etcd.app({ identity: 'b' }, [], [LeaderJob]);
    expect(a.get(LeaderJob).run()).toBe('ran');
    const [term] = a.get(LeaderJob).terms;
    expect(term).toMatchObject({ election: 'leader', identity: 'a', isLeader: true });
    expect(term?.fencingToken).toBe((await keyOf('a')).createRevision);
    expect(term?.signal.aborted).toBe(false);
    // The same term from the service, synchronously; none outside a run, none on a follower.
    expect(electionOf(a).term()).toBe(term);
    expect(LeaderElectionService.current()).toBeUndefined();
    expect(electionOf(a).current()).toBeUndefined();
    expect(electionOf(b).term()).toBeUndefined();
    expect(b.get(LeaderJob).run()).toBeUndefined();
    expect(b.get(LeaderJob).terms).toEqual([]);
  });

  it('a key deleted from outside ends the term (key-deleted); the next leader has a greater token', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [LeaderJob]);
    await leads(a);
    const b = await etcd.app({ identity: 'b' }, [], [LeaderJob]);
    const run = a.get(LeaderJob).untilDeposed();
    const [term] = a.get(LeaderJob).terms as Leadership[];
    const bLeads = leads(b);
    await etcd.client.delete().key((await keyOf('a')).key);
    const reason = await run;
    expect(reason).toBeInstanceOf(LeadershipLostError);
    expect(reason).toMatchObject({ election: 'leader', reason: 'key-deleted', fencingToken: term.fencingToken });
    expect(term.isLeader).toBe(false);
    await bLeads;
    expect(electionOf(b).term()?.fencingToken).toBeGreaterThan(term.fencingToken);
  });

  it('a lease revoked from outside ends the term at the first evidence (its key deleted), then the session is renewed', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [LeaderJob]);
    await leads(a);
    const run = a.get(LeaderJob).untilDeposed();
    const [term] = a.get(LeaderJob).terms as Leadership[];
    // At the abort, this instance has not yet heard from its keepalive that the lease is gone: the term ends on
    // the key's delete event itself, not a round trip later (by then another instance may lead).
    let sessionAliveAtAbort: boolean | undefined;
    onAbort(term.signal, () => (sessionAliveAtAbort = a.get(EtcdSessionService).peek()?.alive));
    const { leases } = await etcd.client.leaseClient.leaseLeases({});
    await etcd.client.leaseClient.leaseRevoke({ ID: leases[0].ID });
    expect(await run).toMatchObject({ reason: 'key-deleted', fencingToken: term.fencingToken });
    expect(sessionAliveAtAbort).toBe(true);
    // The instance campaigns again on its new session: a new term, a greater token.
    await leads(a);
    expect(electionOf(a).term()?.fencingToken).toBeGreaterThan(term.fencingToken);
  });

  it('resign() ends the term as resigned', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [LeaderJob]);
    await leads(a);
    const run = a.get(LeaderJob).untilDeposed();
    await electionOf(a).resign();
    expect(await run).toMatchObject({ reason: 'resigned' });
    expect(electionOf(a).term()).toBeUndefined();
  });

  it('at shutdown the term ends first (shutdown), and the standby is elected only after the run settled', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [LeaderJob]);
    await leads(a);
    const b = await etcd.app({ identity: 'b' }, [], [LeaderJob]);
    const order: string[] = [];
    const run = a
      .get(LeaderJob)
      .untilDeposed()
      .then(async (reason) => {
        order.push(`run told: ${(reason as LeadershipLostError).reason}`);
        await new Promise((resolve) => setImmediate(resolve)); // the run winds down for a moment
        order.push('run settled');
      });
    const bLeads = leads(b).then(() => order.push('b elected'));
    await a.close();
    await Promise.all([run, bLeads]);
    expect(order).toEqual(['run told: shutdown', 'run settled', 'b elected']);
  });

  it('fencedTxn() commits while leading and is refused once the term ended, writing nothing', async () => {
    const a = await etcd.app({ identity: 'a' });
    await leads(a);
    const term = electionOf(a).term() as Leadership;
    await term.fencedTxn().put('leader-data', 'one').commit();
    expect(await etcd.client.get('leader-data').string()).toBe('one');
    await electionOf(a).resign();
    await expect(term.fencedTxn().put('leader-data', 'two').commit()).rejects.toMatchObject({
      name: 'LeadershipLostError',
      reason: 'resigned',
    });
    expect(await etcd.client.get('leader-data').string()).toBe('one');
    await etcd.client.delete().key('leader-data');
  });

  it('events and health name the term fencing token', async () => {
    const a = await etcd.app({ identity: 'a' });
    const gained = firstValueFrom(
      a.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.LeadershipChanged && e.leader)),
    );
    await leads(a);
    const term = electionOf(a).term() as Leadership;
    expect(await gained).toMatchObject({ election: 'leader', leader: true, fencingToken: term.fencingToken });
    expect(electionOf(a).status()).toEqual([{ election: 'leader', leader: true, campaigning: true, fencingToken: term.fencingToken }]);
    const ended = firstValueFrom(
      a.get(EtcdLockEvents).events$.pipe(filter((e) => e.type === EtcdLockEventName.LeadershipChanged && !e.leader)),
    );
    await electionOf(a).resign();
    expect(await ended).toMatchObject({ leader: false, fencingToken: term.fencingToken });
  });
});

/** Work held while leading: counts how many instances hold it at once, across the apps of this test. */
const held = { now: 0, max: 0, calls: [] as Array<{ identity: string; token: bigint }> };
/** Emits whenever an @OnLeadership method of this file is called. */
const called = new Subject<void>();
/** Resolves once `done()` holds, checked now and after each @OnLeadership call. */
async function until(done: () => boolean): Promise<void> {
  if (!done()) await firstValueFrom(called.pipe(filter(done)));
}

@Injectable()
class Feed {
  ended: LeadershipLostError | undefined;

  @OnLeadership()
  async follow(leadership: Leadership): Promise<void> {
    expect(LeaderElectionService.current()).toBe(leadership);
    held.calls.push({ identity: leadership.identity, token: leadership.fencingToken });
    held.now++;
    held.max = Math.max(held.max, held.now);
    called.next();
    try {
      this.ended = (await whenAborted(leadership.signal)) as LeadershipLostError;
    } finally {
      held.now--;
    }
  }
}

@Injectable()
class BrokenOnce {
  static calls: bigint[] = [];

  @OnLeadership('broken')
  async start(leadership: Leadership): Promise<void> {
    BrokenOnce.calls.push(leadership.fencingToken);
    called.next();
    if (BrokenOnce.calls.length === 1) throw new Error('feed refused to connect');
    await whenAborted(leadership.signal);
  }
}

describe('@OnLeadership', () => {
  beforeEach(() => {
    Object.assign(held, { now: 0, max: 0, calls: [] });
  });

  it('is called with each term; the work ends on its signal and one instance holds it at a time', async () => {
    const a = await etcd.app({ identity: 'a' }, [], [Feed]);
    await leads(a);
    const b = await etcd.app({ identity: 'b' }, [], [Feed]);
    expect(held.calls).toEqual([{ identity: 'a', token: electionOf(a).term()?.fencingToken }]);
    const bLeads = leads(b);
    await electionOf(a).resign();
    await bLeads;
    // b's method is called on its own term, after a's work ended.
    await until(() => held.calls.length === 2);
    expect(a.get(Feed).ended).toMatchObject({ reason: 'resigned' });
    expect(held.calls.map((c) => c.identity)).toEqual(['a', 'b']);
    expect(held.calls[1].token).toBeGreaterThan(held.calls[0].token);
    expect(held.max).toBe(1);
    await b.close();
    expect(b.get(Feed).ended).toMatchObject({ reason: 'shutdown' });
    expect(held.now).toBe(0);
  });

  it('a method that fails makes the instance resign and campaign again after a backoff', async () => {
    BrokenOnce.calls = [];
    const errors: string[] = [];
    const logger = new (class extends ConsoleLogger {
      override error(message: unknown) {
        errors.push(String(message));
      }
      override log() {}
    })();
    const a = await etcd.app({ identity: 'a' }, [], [BrokenOnce], logger);
    // The first term ends by the failure; a second one starts after the backoff (1 s), and its method runs.
    await until(() => BrokenOnce.calls.length === 2);
    expect(electionOf(a).term('broken')?.fencingToken).toBe(BrokenOnce.calls[1]);
    expect(BrokenOnce.calls[1]).toBeGreaterThan(BrokenOnce.calls[0]);
    expect(
      errors.some(
        (e) =>
          e.includes('BrokenOnce.start failed') && e.includes('feed refused to connect') && e.includes("Resigning from election 'broken'"),
      ),
    ).toBe(true);
  });

  it('refuses bad input: a bad election name, a non-method, a request-scoped provider', async () => {
    expect(() => OnLeadership('a/b')).toThrow(InvalidArgumentError);
    expect(() => OnLeadership('')).toThrow(/election.*must not be empty/);
    expect(() => {
      class NotAMethod {
        @OnLeadership()
        get value() {
          return 1;
        }
      }
      return NotAMethod;
    }).toThrow(/@OnLeadership can only decorate a method \(on NotAMethod.value\)/);
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {
      @OnLeadership()
      run() {}
    }
    await expect(etcd.app({}, [], [PerRequest])).rejects.toThrow(EtcdLockError);
  });
});
