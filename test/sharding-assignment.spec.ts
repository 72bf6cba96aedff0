import { type Assignment, rebalance } from '../lib/sharding/assignment.js';
import { murmur3, shardOf } from '../lib/sharding/shard-hash.js';

/** A small deterministic generator, so a failure names a reproducible case. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function expectBalanced(a: Assignment, live: string[], reservedCount = 0): void {
  const all = Object.values(a.owners)
    .flat()
    .sort((x, y) => x - y);
  expect(all).toEqual([...Array(a.shards).keys()]); // every shard exactly once
  const available = a.shards - reservedCount;
  for (const id of live) {
    expect([Math.floor(available / live.length), Math.ceil(available / live.length)]).toContain(a.owners[id].length);
  }
}

describe('The shard hash', () => {
  it('is MurmurHash3 x86_32 (published test vectors), so shardOf is the same in every version', () => {
    expect(murmur3('', 0)).toBe(0);
    expect(murmur3('', 1)).toBe(0x514e28b7);
    expect(murmur3('test', 0)).toBe(0xba6bd213);
    expect(murmur3('Hello, world!', 0)).toBe(0xc0363e43);
    expect(murmur3('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723);
    expect(murmur3('ü€😀', 0)).toBe(murmur3('ü€😀', 0));
    expect(shardOf('tenant-42', 64)).toBe(murmur3('tenant-42') % 64);
  });
});

describe('rebalance', () => {
  it('balances any membership: ⌊S/R⌋ or ⌈S/R⌉ each, every shard once', () => {
    const next = random(1);
    for (let round = 0; round < 300; round++) {
      const shards = 1 + Math.floor(next() * 200);
      const live = Array.from({ length: 1 + Math.floor(next() * 12) }, (_, i) => `m${i}`);
      expectBalanced(rebalance(undefined, live, shards), live);
    }
  });

  it('moves only what it must: a joiner takes only from others, a leaver’s shards only go, and a second pass changes nothing', () => {
    const next = random(2);
    for (let round = 0; round < 200; round++) {
      const shards = 1 + Math.floor(next() * 256);
      let live = ['m0'];
      let current = rebalance(undefined, live, shards);
      for (let step = 0; step < 12; step++) {
        const join = live.length < 2 || next() < 0.6;
        const before = current;
        if (join) live = [...live, `m${step + 1}`];
        else {
          const gone = Math.floor(next() * live.length);
          live = live.filter((_, i) => i !== gone);
        }
        current = rebalance(before, live, shards);
        expectBalanced(current, live);
        expect(rebalance(current, live, shards)).toEqual(current);
        const gained = (id: string) => current.owners[id].filter((s) => !before.owners[id].includes(s));
        const lost = (id: string) => before.owners[id].filter((s) => !current.owners[id].includes(s));
        // A joiner: old members only lose shards. A leaver: survivors keep every shard they had.
        const moved = join ? live.slice(0, -1).flatMap(gained) : live.flatMap(lost);
        expect({ shards, live, moved }).toEqual({ shards, live, moved: [] });
      }
    }
  });

  it('keeps a departed member’s shards while reserved; they move once the reservation ends', () => {
    const first = rebalance(undefined, ['a', 'b', 'c'], 64);
    const held = rebalance(first, ['a', 'b'], 64, new Set(['c']));
    expect(held.owners.c).toEqual(first.owners.c);
    expect(held.owners.a).toEqual(first.owners.a);
    const back = rebalance(held, ['a', 'b', 'c'], 64);
    expect(back).toEqual(first);
    const moved = rebalance(held, ['a', 'b'], 64);
    expect(moved.owners.c).toBeUndefined();
    expectBalanced(moved, ['a', 'b']);
  });

  it('starts over when the shard count changed, and drops malformed entries', () => {
    const old = rebalance(undefined, ['a', 'b'], 8);
    expectBalanced(rebalance(old, ['a', 'b'], 16), ['a', 'b']);
    const bad = { shards: 8, owners: { a: [0, 0, 99, -1, 1.5, 1], b: [1, 2] } } as Assignment;
    expectBalanced(rebalance(bad, ['a', 'b'], 8), ['a', 'b']);
  });
});
