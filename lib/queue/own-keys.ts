import type { IKeyValue } from 'etcd3';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { ResilientWatch } from '../etcd/resilient-watch.js';
import type { LeaseSession } from '../session/lease-session.js';
import { untilAnswered } from '../session/until-answered.js';
import { releaseRequest } from './queue-requests.js';

/**
 * The queue keys one session's lease may hold, and the ones it may hold without knowing.
 *
 * Every write is in doubt until answered: a join whose answer was lost may still be applied later, after its
 * caller gave up, and put a key on our lease that nobody here owns (it would block the name until the session
 * ends). A release whose answer was lost may be applied later too, and delete the next key of the same name.
 * Three rules close both:
 * - **Live keys.** A key on our lease that no live contender of ours uses is stale: whoever meets it (a join, a
 *   resync, the watch below) deletes it, guarded by its create revision, and never counts it as ahead.
 * - **Retired names.** Once a write on a key name went unanswered, no later contender of ours uses that name
 *   (`<lease hex>.<n>` instead): a late delete cannot reach a newer key, and a late put is never mistaken for one.
 * - **Watches in doubt.** A contender that leaves with a join in doubt watches its key's name until the session
 *   ends: a put that lands late is deleted at once (etcd replays it even if it landed before the watch began).
 */
export class OwnKeys {
  private readonly live = new Set<string>();
  private readonly generations = new Map<string, number>();
  private readonly doubtful = new Map<string, ResilientWatch>();

  private constructor(private readonly session: LeaseSession) {
    session.onEnd(() => this.close());
  }

  /** The one record of `session`. */
  static of(session: LeaseSession): OwnKeys {
    let keys = registry.get(session);
    if (!keys) {
      keys = new OwnKeys(session);
      registry.set(session, keys);
    }
    return keys;
  }

  /** The lease's part of a key name under `namePrefix`: its hex, suffixed once a write there went unanswered. */
  tag(namePrefix: string): string {
    const generation = this.generations.get(namePrefix);
    return generation === undefined ? this.session.hex : `${this.session.hex}.${generation}`;
  }

  /** A write on the key `tag(namePrefix)` went unanswered: the next key there gets another name. */
  retire(namePrefix: string): void {
    this.generations.set(namePrefix, (this.generations.get(namePrefix) ?? 0) + 1);
  }

  /** A contender of ours uses `key` from now on. */
  claim(key: string): void {
    this.live.add(key);
  }

  /** No contender of ours uses `key` any more. */
  disown(key: string): void {
    this.live.delete(key);
  }

  /** Whether `kv` is on our lease while no contender of ours uses it: a join or release of ours landed late. */
  isStale(kv: Pick<IKeyValue, 'key' | 'lease'>): boolean {
    return kv.lease === this.session.id && !this.live.has(kv.key.toString());
  }

  /**
   * Deletes a stale key of ours, only if it is still the one created at `createRevision`. Never rejects: with
   * `untilAnswered`, it tries again (backing off) while the session lives; else once (a join that meets the key
   * again removes it then).
   */
  async remove(rpc: EtcdPort, key: Buffer, createRevision: string, retry = false): Promise<void> {
    const request = () => rpc.txn(releaseRequest(key, BigInt(createRevision)), `remove a stale key of ours ('${key}')`);
    if (retry) await untilAnswered(this.session, request);
    else await request().catch(() => undefined);
  }

  /**
   * `key` may be put later by a join of ours that went unanswered: watch it from `fromRevision` until the session
   * ends, and delete it whenever it appears while no contender of ours uses it.
   */
  watchInDoubt(rpc: EtcdPort, key: string, fromRevision: bigint): void {
    if (this.doubtful.has(key) || !this.session.alive) return;
    // The watch tells of a put once: each removal keeps trying until etcd answers.
    const removeIfStale = (kv: IKeyValue) => {
      if (this.isStale(kv)) void this.remove(rpc, kv.key, kv.create_revision, true);
    };
    const watch = new ResilientWatch(
      rpc,
      { prefix: key, exact: true },
      {
        // After a restart (history compacted past `fromRevision`): read the key now, and watch on from there.
        read: async () => {
          const res = await rpc.range({ key: Buffer.from(key) }, `find '${key}'`);
          if (res.kvs[0]) removeIfStale(res.kvs[0]);
          return BigInt(res.header.revision);
        },
        onEvent: (type, kv) => type === 'put' && removeIfStale(kv),
      },
    );
    this.doubtful.set(key, watch.start(fromRevision));
  }

  private close(): void {
    for (const watch of this.doubtful.values()) void watch.close();
    this.doubtful.clear();
    this.live.clear();
    registry.delete(this.session);
  }
}

const registry = new WeakMap<LeaseSession, OwnKeys>();
