import type { IKeyValue } from 'etcd3';
import { prefixRangeEnd } from '../etcd/keys.js';
import { oldestFirst } from '../etcd/requests.js';
import { changeWatch, type ResilientWatch } from '../etcd/resilient-watch.js';
import { queueKeyFilter } from '../queue/holder-watch.js';
import type { QueueContext } from '../queue/queue-context.js';

/** The lease hex a key of ours ends with (`…/<lease hex>`). */
const leaseOf = (key: string) => key.slice(key.lastIndexOf('/') + 1);

/**
 * The candidate this leader should hand over to: the first in line of those whose priority is higher than `mine`
 * (a candidate without a priority key counts as 0). Undefined when nobody outranks us: among equals the
 * incumbent keeps leading.
 */
export function preferredCandidate(queue: readonly IKeyValue[], priorities: readonly IKeyValue[], mine: number): IKeyValue | undefined {
  const byLease = new Map(priorities.map((kv) => [leaseOf(kv.key.toString()), Number(kv.value.toString())]));
  let best: IKeyValue | undefined;
  let bestPriority = mine;
  for (const kv of queue.slice(1)) {
    const priority = byLease.get(leaseOf(kv.key.toString())) ?? 0;
    if (Number.isFinite(priority) && priority > bestPriority) {
      best = kv;
      bestPriority = priority;
    }
  }
  return best;
}

/**
 * While this instance leads with a `leaderPriority`: one watch of the election's priority keys, and after each
 * change (and once at the start of the term) one read of the queue and the priorities; a candidate that outranks
 * us is handed to `yieldTo` (which transfers the leadership to it). Stops with the term.
 */
export class LeaderPreference {
  private watch: ResilientWatch | undefined;
  private checking = false;
  private again = false;
  private done = false;

  constructor(
    private readonly ctx: QueueContext,
    private readonly priorityRoot: string,
    private readonly mine: number,
    private readonly yieldTo: (candidateKey: string) => Promise<void>,
  ) {}

  start(): void {
    this.watch = changeWatch(this.ctx.rpc, this.priorityRoot, () => void this.check()).start();
  }

  async stop(): Promise<void> {
    this.done = true;
    await this.watch?.close();
  }

  private async check(): Promise<void> {
    if (this.done) return;
    // One read at a time; a change during it is looked at once more after it.
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    try {
      do {
        this.again = false;
        const root = Buffer.from(this.priorityRoot);
        const res = await this.ctx.rpc.txn(
          {
            compare: [],
            success: [
              { request_range: oldestFirst(Buffer.from(this.ctx.namePrefix)) },
              { request_range: { key: root, range_end: prefixRangeEnd(root) } },
            ],
          },
          `read the candidates' priorities in election '${this.ctx.name}'`,
        );
        const [queue, priorities] = res.responses.map((r) => r.response_range.kvs);
        const better = preferredCandidate(queue.filter(queueKeyFilter('election', this.ctx.namePrefix)), priorities, this.mine);
        if (better && !this.done) {
          this.done = true;
          await this.yieldTo(better.key.toString());
          return;
        }
      } while (this.again && !this.done);
    } catch {
      // etcd did not answer: the next change (or the next term) looks again; leading on is safe.
    } finally {
      this.checking = false;
    }
  }
}
