import { jest } from '@jest/globals';
import { ShardChangeLog } from '../../lib/sharding/change-log.js';

describe('ShardChangeLog', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('logs one line per rebalance, once the shards owned stop changing, with what changed in sum', () => {
    const lines: string[] = [];
    const log = new ShardChangeLog('tenants', 8, (line) => lines.push(line));
    log.changed([1], [1], []);
    log.changed([1, 2], [2], []);
    jest.advanceTimersByTime(99);
    log.changed([1, 2, 3], [3], []);
    expect(lines).toEqual([]); // still changing
    jest.advanceTimersByTime(100);
    expect(lines).toEqual(["Shards of group 'tenants': 3 of 8 owned here (+[1, 2, 3])"]);
    // A shard taken and handed back within one rebalance cancels out.
    log.changed([1, 2, 3, 4], [4], []);
    log.changed([2, 3], [], [1, 4]);
    jest.advanceTimersByTime(100);
    expect(lines.at(-1)).toBe("Shards of group 'tenants': 2 of 8 owned here (−[1])");
    log.flush();
    expect(lines).toHaveLength(2); // nothing new to say
  });

  it('flush() says what is pending at once (a group leaving)', () => {
    const lines: string[] = [];
    const log = new ShardChangeLog('g', 4, (line) => lines.push(line));
    log.changed([], [], [0, 1]);
    log.flush();
    expect(lines).toEqual(["Shards of group 'g': 0 of 4 owned here (−[0, 1])"]);
    jest.advanceTimersByTime(1000);
    expect(lines).toHaveLength(1);
  });
});
