import type { INestApplicationContext } from '@nestjs/common';
import { InvalidOptionsError, LeaderElectionService } from '../lib/index.js';
import { useEtcd } from './harness/fixtures.js';

/** Preferred leaders (`leaderPriority`): a candidate of a higher priority is handed the leadership at a safe point. */
const etcd = useEtcd();

/**
 * An instance that only watches the election `leader` (it campaigns in an election of its own). One subscription
 * records the leaders and wakes `until`: a second subscription (its own read and watch) could see a leader before
 * the recording one has.
 */
async function observer(): Promise<{ leaders: string[]; until: (identity: string) => Promise<void> }> {
  const app = await etcd.app({ identity: 'observer', election: 'observer-own' });
  const leaders: string[] = [];
  const waiting: Array<() => void> = [];
  app
    .get(LeaderElectionService)
    .observe('leader')
    .subscribe((leader) => {
      if (leader !== null && leaders.at(-1) !== leader) leaders.push(leader);
      for (const wake of waiting.splice(0)) wake();
    });
  const until = async (identity: string) => {
    while (leaders.at(-1) !== identity) await new Promise<void>((resolve) => waiting.push(resolve));
  };
  return { leaders, until };
}

/**
 * A rolling restart of 5 replicas, as a Deployment with surge does it: each new replica starts, then an old one
 * stops (oldest first). Returns the leaders in the order they led.
 */
async function rollingRestart(preferred: boolean): Promise<string[]> {
  const watch = await observer();
  const priority = (v: number) => (preferred ? { leaderPriority: v } : {});
  const old: INestApplicationContext[] = [];
  for (let i = 1; i <= 5; i++) old.push(await etcd.app({ identity: `v1-${i}`, ...priority(1) }));
  await watch.until('v1-1');
  for (let i = 1; i <= 5; i++) {
    await etcd.app({ identity: `v2-${i}`, ...priority(2) });
    await etcd.waitForKeys('election/leader/', 5 + 1);
    // With preference the first new replica is handed the leadership; after that, equals keep the incumbent.
    if (preferred && i === 1) await watch.until('v2-1');
    await old[i - 1].close();
    await watch.until(preferred || i === 5 ? 'v2-1' : `v1-${i + 1}`);
  }
  return watch.leaders;
}

describe('leaderPriority', () => {
  it('without preference, a rolling restart of 5 replicas moves the leadership 5 times', async () => {
    const without = await rollingRestart(false);
    console.log(`rolling restart of 5: ${without.length - 1} moves without preference (${without.join(' → ')})`);
    expect(without).toEqual(['v1-1', 'v1-2', 'v1-3', 'v1-4', 'v1-5', 'v2-1']);
  });

  it('with the new version preferred: one move, at the first new replica', async () => {
    const leaders = await rollingRestart(true);
    console.log(`rolling restart of 5: ${leaders.length - 1} move(s) with preference (${leaders.join(' → ')})`);
    expect(leaders).toEqual(['v1-1', 'v2-1']);
  });

  it('a new leader of a lower priority hands over at once to a queued candidate that outranks it', async () => {
    const watch = await observer();
    const low = await etcd.app({ identity: 'low', leaderPriority: 1 });
    await watch.until('low');
    const mid = await etcd.app({ identity: 'mid', leaderPriority: 5 });
    await watch.until('mid');
    await etcd.app({ identity: 'high', leaderPriority: 9 });
    await watch.until('high');
    expect(watch.leaders).toEqual(['low', 'mid', 'high']);
    expect(low.get(LeaderElectionService).isLeader()).toBe(false);
    expect(mid.get(LeaderElectionService).isLeader()).toBe(false);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, '2'])('refuses leaderPriority %p: InvalidOptionsError naming it', async (bad) => {
    await expect(etcd.app({ identity: 'x', leaderPriority: bad as number })).rejects.toThrow(InvalidOptionsError);
    await expect(etcd.app({ identity: 'x', leaderPriority: bad as number })).rejects.toThrow(/leaderPriority/);
  });
});
