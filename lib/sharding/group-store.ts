import type { IKeyValue } from 'etcd3';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { assignmentKey, memberPrefix } from '../etcd/keys.js';
import type { LeaseSession } from '../session/lease-session.js';
import { type Assignment, parseAssignment } from './assignment.js';
import { EtcdUnavailableError } from '../errors.js';
import { OwnKeys } from '../queue/own-keys.js';
import { untilAnswered } from '../session/until-answered.js';
import { releaseRequest } from '../queue/queue-requests.js';
import { modifiedAt, nothingUnder, oldestFirst } from '../etcd/requests.js';

/** A group as etcd has it at one revision: its members and the assignment record in force. */
export interface GroupSnapshot {
  /** Member id per lease hex, oldest member first. */
  readonly ids: Map<string, string>;
  readonly record: Assignment | undefined;
  /** The record's mod revision, `'0'` when there is none (what the next write compares with). */
  readonly recordRevision: string;
}

/**
 * A sharding group's keys in etcd: `<prefix>member/<group>/<lease hex>` (value: the identity) per member, on its
 * lease, and the assignment record `<prefix>assignment/<group>/current`. Every request here is one round trip.
 */
export class GroupStore {
  readonly membersPrefix: string;
  readonly recordKey: string;
  /** Sessions on which a member put went unanswered. */
  private readonly joinsInDoubt = new WeakSet<LeaseSession>();
  /** Our member key's create revision per session, as the last answered join read it. */
  private readonly memberCreated = new WeakMap<LeaseSession, bigint>();

  constructor(
    private readonly rpc: EtcdPort,
    prefix: string,
    private readonly group: string,
  ) {
    this.membersPrefix = memberPrefix(prefix, group);
    this.recordKey = assignmentKey(prefix, group);
  }

  /**
   * Puts our member key on the session's lease; returns the revision it was written at. A put that goes unanswered
   * may land later, even after we left: `leave` then watches the key (see `OwnKeys`).
   */
  async join(session: LeaseSession, identity: string): Promise<bigint> {
    const key = this.memberKey(session);
    OwnKeys.of(session).claim(key);
    const put = { key: Buffer.from(key), value: Buffer.from(identity), lease: session.id };
    try {
      // The key's create revision comes back too: `leave` deletes only that key, so a delete of it that lands late
      // cannot take the member key of a later join on the same session.
      const res = await this.rpc.txn(
        { compare: [], success: [{ request_put: put }, { request_range: { key: put.key, keys_only: true } }] },
        `join sharding group '${this.group}'`,
      );
      const created = res.responses[1].response_range.kvs[0]?.create_revision;
      if (created) this.memberCreated.set(session, BigInt(created));
      return BigInt(res.header.revision);
    } catch (err) {
      if (err instanceof EtcdUnavailableError) this.joinsInDoubt.add(session);
      throw err;
    }
  }

  /** Members and record at one revision. */
  async read(): Promise<GroupSnapshot> {
    const members = Buffer.from(this.membersPrefix);
    const res = await this.rpc.txn(
      {
        compare: [],
        success: [{ request_range: oldestFirst(members) }, { request_range: { key: Buffer.from(this.recordKey) } }],
      },
      `read sharding group '${this.group}'`,
    );
    const recordKv = res.responses[1].response_range.kvs[0];
    return {
      ids: memberIds(res.responses[0].response_range.kvs, members.length),
      record: recordKv ? parseAssignment(recordKv.value.toString()) : undefined,
      recordRevision: recordKv?.mod_revision ?? '0',
    };
  }

  /** Writes `next` if the record is still the one read at `recordRevision`; false when someone wrote first. */
  async write(next: Assignment, recordRevision: string): Promise<boolean> {
    const key = Buffer.from(this.recordKey);
    const res = await this.rpc.txn(
      {
        compare: [modifiedAt(key, recordRevision)],
        success: [{ request_put: { key, value: Buffer.from(JSON.stringify(next)) } }],
        failure: [],
      },
      `write the assignment of sharding group '${this.group}'`,
    );
    return res.succeeded;
  }

  /**
   * Deletes our member key, then the record too if no member is left (so a group leaves nothing behind). The delete
   * is sent until etcd answers (while the session lives): a member key left behind would keep shards assigned to a
   * member that is gone, until its session ends.
   */
  async leave(session: LeaseSession): Promise<void> {
    const key = this.memberKey(session);
    const created = this.memberCreated.get(session);
    this.memberCreated.delete(session);
    const what = `leave sharding group '${this.group}'`;
    const res = await untilAnswered<{ readonly header: { readonly revision: string } }>(session, () =>
      created === undefined
        ? this.rpc.deleteRange({ key: Buffer.from(key) }, what)
        : this.rpc.txn(releaseRequest(Buffer.from(key), created), what),
    );
    if (!res) return; // the session ended: the key went with its lease
    const own = OwnKeys.of(session);
    own.disown(key);
    if (this.joinsInDoubt.delete(session)) own.watchInDoubt(this.rpc, key, BigInt(res.header.revision) + 1n);
    const members = Buffer.from(this.membersPrefix);
    await this.rpc.txn(
      {
        // An empty range compares as create revision 0: no member left.
        compare: [nothingUnder(members)],
        success: [{ request_delete_range: { key: Buffer.from(this.recordKey) } }],
        failure: [],
      },
      `remove the assignment of sharding group '${this.group}'`,
    );
  }

  private memberKey(session: LeaseSession): string {
    return `${this.membersPrefix}${session.hex}`;
  }
}

/**
 * Member id per lease hex, oldest member first. The id is the identity; a later member with an identity already
 * taken is told apart by its lease (`identity#hex`), the same way on every replica.
 */
function memberIds(kvs: readonly IKeyValue[], prefixLength: number): Map<string, string> {
  const ids = new Map<string, string>();
  const taken = new Set<string>();
  for (const kv of kvs) {
    const hex = kv.key.subarray(prefixLength).toString();
    const identity = kv.value.toString();
    const id = taken.has(identity) ? `${identity}#${hex}` : identity;
    taken.add(id);
    ids.set(hex, id);
  }
  return ids;
}

/** The record names each owner's lease (live ones as now; reserved ones as before), for the count check. */
export function withLeases(next: Assignment, ids: Map<string, string>, previous: Assignment | undefined): Assignment {
  const hexOf = new Map([...ids].map(([hex, id]) => [id, hex]));
  const leases: Record<string, string> = {};
  for (const id of Object.keys(next.owners)) {
    const hex = hexOf.get(id) ?? previous?.leases?.[id];
    if (hex) leases[id] = hex;
  }
  return { ...next, leases };
}
