import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { filter, firstValueFrom } from 'rxjs';
import {
  EtcdLockEventName,
  EtcdLockEvents,
  InvalidArgumentError,
  LeaderElectionService,
  type Leadership,
  type LeadershipChangedEvent,
  LeadershipLostError,
  NotLeaderError,
  OnLeadership,
  UnknownCandidateError,
} from '../lib/index.js';
import { ManualClock } from '../lib/testing/index.js';
import { whenAborted } from '../lib/util/wait-signal.js';
import { useEtcd } from './harness/fixtures.js';

/** Leadership transfer: the term ends, its work drains, and the chosen candidate leads, with nobody in between. */
const etcd = useEtcd();

/** Every @OnLeadership hold of every instance: who, its term, when it started and ended (ms). */
const holds: Array<{ identity: string; token: bigint; from: number; to?: number; reason?: string }> = [];

@Injectable()
class LeaderWork {
  @OnLeadership()
  async hold(term: Leadership): Promise<void> {
    const entry: (typeof holds)[number] = { identity: term.identity, token: term.fencingToken, from: performance.now() };
    holds.push(entry);
    const reason = await whenAborted(term.signal);
    // The work takes a moment to wind down: the transfer waits for it.
    await new Promise((resolve) => setImmediate(resolve));
    entry.to = performance.now();
    entry.reason = (reason as LeadershipLostError).reason;
  }
}

afterEach(() => {
  holds.length = 0;
});

const replica = (identity: string) => etcd.app({ identity }, [], [LeaderWork]);
const leads = (app: INestApplicationContext) =>
  firstValueFrom(
    app
      .get(EtcdLockEvents)
      .events$.pipe(filter((e): e is LeadershipChangedEvent => e.type === EtcdLockEventName.LeadershipChanged && e.leader)),
  );

async function three(): Promise<INestApplicationContext[]> {
  const a = await replica('a');
  await a.get(LeaderElectionService).campaign();
  const b = await replica('b');
  const c = await replica('c');
  await etcd.waitForKeys('election/leader/', 3);
  return [a, b, c];
}

describe('LeaderElectionService.transfer', () => {
  it('to the third candidate: the second’s key goes first, then the leader’s: the second never leads; the work drains first', async () => {
    const [a, b, c] = await three();
    const bLed: LeadershipChangedEvent[] = [];
    const watching = b
      .get(EtcdLockEvents)
      .events$.pipe(filter((e): e is LeadershipChangedEvent => e.type === EtcdLockEventName.LeadershipChanged && e.leader))
      .subscribe((e) => bLed.push(e));
    const before = await a.get(LeaderElectionService).inspect();
    const keyOf = (identity: string) => [...before.holders, ...before.waiters].find((e) => e.value === identity)?.key as string;
    const cLeads = leads(c);
    const aEnded = firstValueFrom(
      a
        .get(EtcdLockEvents)
        .events$.pipe(filter((e): e is LeadershipChangedEvent => e.type === EtcdLockEventName.LeadershipChanged && !e.leader)),
    );
    expect(await a.get(LeaderElectionService).transfer(undefined, 'c')).toBe('c');
    expect((await aEnded).reason).toBe('transferred');
    const elected = await cLeads;
    // The old term ended as `transferred`, and its work had ended before the next began.
    const [first, second] = holds;
    expect([first.identity, first.reason, second.identity]).toEqual(['a', 'transferred', 'c']);
    expect(first.to).toBeLessThanOrEqual(second.from);
    expect(second.token).toBe(elected.fencingToken);
    expect(elected.fencingToken).toBeGreaterThan(first.token);
    // etcd's history: b's key was deleted while a's still led, then a's; c's stayed throughout.
    const history = await etcd.client
      .watch()
      .prefix('election/leader/')
      .startRevision(String(before.revision + 1n))
      .create();
    const deleted = new Map<string, bigint>();
    await new Promise<void>((heard) =>
      history.on('delete', (kv) => {
        deleted.set(kv.key.toString(), BigInt(kv.mod_revision));
        if (deleted.size === 2) heard();
      }),
    );
    await history.cancel();
    expect([...deleted.keys()].sort()).toEqual([keyOf('a'), keyOf('b')].sort());
    expect(deleted.get(keyOf('b'))).toBeLessThan(deleted.get(keyOf('a')) as bigint);
    await etcd.waitForKeys('election/leader/', 3); // a and b campaign again, behind c
    expect(await a.get(LeaderElectionService).leader()).toBe('c');
    watching.unsubscribe();
    expect(bLed).toEqual([]);
  });

  it('100 transfers to the next in line: the work is never held by two, tokens only grow; handover time reported', async () => {
    const apps = await three();
    const byIdentity = new Map(apps.map((app, i) => [['a', 'b', 'c'][i], app]));
    const times: number[] = [];
    let leader = 'a';
    for (let i = 0; i < 100; i++) {
      const current = byIdentity.get(leader) as INestApplicationContext;
      // The one that handed over campaigns again, behind: wait for its key.
      await etcd.waitForKeys('election/leader/', 3);
      const next = (await current.get(LeaderElectionService).inspect()).waiters[0].value;
      const elected = leads(byIdentity.get(next) as INestApplicationContext);
      const started = performance.now();
      expect(await current.get(LeaderElectionService).transfer(undefined)).toBe(next);
      await elected;
      times.push(performance.now() - started);
      leader = next;
    }
    for (let i = 1; i < holds.length; i++) {
      expect(holds[i].token).toBeGreaterThan(holds[i - 1].token);
      if (holds[i - 1].to !== undefined) expect(holds[i - 1].to as number).toBeLessThanOrEqual(holds[i].from);
    }
    times.sort((x, y) => x - y);
    console.log(
      `transfer: p50 ${times[50].toFixed(1)} ms, p99 ${times[98].toFixed(1)} ms from the call to the new leader's term (100 transfers)`,
    );
  });

  it('refuses: an unknown identity (the term goes on), a non-leader, an empty identity', async () => {
    const [a, b] = await three();
    const term = a.get(LeaderElectionService).term();
    const err = await a
      .get(LeaderElectionService)
      .transfer(undefined, 'nobody')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownCandidateError);
    expect(term?.signal.aborted).toBe(false);
    expect(a.get(LeaderElectionService).isLeader()).toBe(true);
    await expect(b.get(LeaderElectionService).transfer(undefined, 'a')).rejects.toThrow(NotLeaderError);
    await expect(a.get(LeaderElectionService).transfer(undefined, '')).rejects.toThrow(InvalidArgumentError);
  });

  it('with nobody else campaigning: UnknownCandidateError, and the leader keeps leading', async () => {
    const a = await replica('a');
    await a.get(LeaderElectionService).campaign();
    await expect(a.get(LeaderElectionService).transfer()).rejects.toThrow(UnknownCandidateError);
    expect(a.get(LeaderElectionService).isLeader()).toBe(true);
  });
});

describe('maxTermMs: a bound on every term', () => {
  // The bound stays below the session's keepalive interval (TTL/3): the manual clock moves the keepalives too, and
  // real etcd answers them in real time.
  it('when it passes, the term ends (max-hold) after its work drains, and the next candidate leads; alone, a new term of its own', async () => {
    const clock = new ManualClock(Date.now());
    const a = await etcd.app({ identity: 'a', clock, maxTermMs: 1000 }, [], [LeaderWork]);
    await a.get(LeaderElectionService).campaign();
    const first = a.get(LeaderElectionService).term() as Leadership;
    // Alone: its key goes, and it leads again, in a new term.
    const again = leads(a);
    await clock.advance(1000);
    expect((first.signal.reason as LeadershipLostError).reason).toBe('max-hold');
    expect((await again).fencingToken).toBeGreaterThan(first.fencingToken);

    const b = await replica('b');
    await etcd.waitForKeys('election/leader/', 2);
    const second = a.get(LeaderElectionService).term() as Leadership;
    const bLeads = leads(b);
    await clock.advance(1000);
    expect((second.signal.reason as LeadershipLostError).reason).toBe('max-hold');
    expect((await bLeads).fencingToken).toBeGreaterThan(second.fencingToken);
    const ended = holds.find((h) => h.token === second.fencingToken);
    expect(ended?.reason).toBe('max-hold');
    expect(ended?.to).toBeLessThanOrEqual(holds.find((h) => h.identity === 'b')?.from as number);
  });
});
