/**
 * etcd's own layout (Go `concurrency` package, `etcdctl lock` / `etcdctl elect`): a contender writes
 * `<prefix><kind>/<name>/<lease id in hex>`, and the key with the lowest create revision owns the name.
 */
export type KeyKind = 'lock' | 'election' | 'shard' | 'semaphore' | 'rwlock' | 'job';

export function kindPrefix(prefix: string, kind: KeyKind): string {
  return `${prefix}${kind}/`;
}

export function namePrefix(prefix: string, kind: KeyKind, name: string): string {
  return `${prefix}${kind}/${name}/`;
}

/** Members of a sharding group: `<prefix>member/<group>/<lease hex>`, value the identity. */
export function memberPrefix(prefix: string, group: string): string {
  return `${membersRoot(prefix)}${group}/`;
}

/** Where every group's members live. */
export function membersRoot(prefix: string): string {
  return `${prefix}member/`;
}

/**
 * A candidate's leader priority in an election: `<prefix>priority/<election>/<lease hex>`, value the number, on the
 * candidate's lease (the same lease as its election key, so the two are matched by lease).
 */
export function priorityPrefix(prefix: string, election: string): string {
  return `${prefix}priority/${election}/`;
}

/** The group's assignment record (JSON), under a prefix of its own so that one watch sees only it. */
export function assignmentKey(prefix: string, group: string): string {
  return `${assignmentsRoot(prefix)}${group}/current`;
}

/** Where every group's assignment record lives. */
export function assignmentsRoot(prefix: string): string {
  return `${prefix}assignment/`;
}

/**
 * A scheduled job's keys, all under `<prefix>job/<name>/`:
 * - `run/<fire time>`: the record of that fire time's runs (JSON, no lease: history outlives replicas);
 * - `hold/<fire time>/<lease hex>`: a run going on (on its replica's lease; its create revision is the run's
 *   fencing token), deleted when the run ends or its replica dies;
 * - `paused`: exists while the job is paused, fleet-wide;
 * - `floor/<fire time>`: the newest fire time whose record retention removed: none at or before it is claimed again;
 * - `spec`: the schedule (JSON), for the CLI's listings;
 * - `trigger/<at>`: a run asked for now (CLI or service), claimed by one replica.
 * A fire time is its epoch milliseconds, zero-padded to 16 digits, so keys sort as times do.
 */
export const jobKeys = {
  prefix: (prefix: string, job: string) => `${prefix}job/${job}/`,
  runs: (prefix: string, job: string) => `${prefix}job/${job}/run/`,
  run: (prefix: string, job: string, fireTime: number) => `${prefix}job/${job}/run/${fireSegment(fireTime)}`,
  holds: (prefix: string, job: string) => `${prefix}job/${job}/hold/`,
  /** The hold's name in the `job` kind, as the deletion watches know it: `<job>/hold/<fire time>`. */
  holdName: (job: string, fireTime: number) => `${job}/hold/${fireSegment(fireTime)}`,
  paused: (prefix: string, job: string) => `${prefix}job/${job}/paused`,
  floors: (prefix: string, job: string) => `${prefix}job/${job}/floor/`,
  floor: (prefix: string, job: string, fireTime: number) => `${prefix}job/${job}/floor/${fireSegment(fireTime)}`,
  spec: (prefix: string, job: string) => `${prefix}job/${job}/spec`,
  /** Every job's keys: `<prefix>job/`. */
  root: (prefix: string) => `${prefix}job/`,
  triggers: (prefix: string, job: string) => `${prefix}job/${job}/trigger/`,
  trigger: (prefix: string, job: string, at: number) => `${prefix}job/${job}/trigger/${fireSegment(at)}`,
  /** The one fire time waiting for the run going on (overlap `buffer-one`); its value is the fire time. */
  buffered: (prefix: string, job: string) => `${prefix}job/${job}/buffered`,
} as const;

/** A fire time as a key segment: epoch milliseconds, zero-padded to 16 digits. */
export function fireSegment(fireTime: number): string {
  return Math.trunc(fireTime).toString().padStart(16, '0');
}

export function leaseHex(leaseId: string): string {
  return BigInt(leaseId).toString(16);
}

/** The exclusive end of the range of all keys that start with `prefix` (etcd's `clientv3.GetPrefixRangeEnd`). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: the range runs to the end of the keyspace.
  return Buffer.from([0]);
}

/** Every root under the prefix that the library writes: the start-up access probe and the CLI read this list. */
export const KEY_ROOTS = ['lock', 'election', 'shard', 'semaphore', 'rwlock', 'member', 'assignment', 'job', 'priority'] as const;
export type KeyRoot = (typeof KEY_ROOTS)[number];

/** `<prefix><root>/`. */
export function rootPrefix(prefix: string, root: KeyRoot): string {
  return `${prefix}${root}/`;
}

/** `<prefix><root>/` for every root the library writes. */
export function keyRoots(prefix: string): string[] {
  return KEY_ROOTS.map((root) => rootPrefix(prefix, root));
}

/**
 * Whether `rest` (a key after its name prefix `<prefix><kind>/<name>/`) is a contender's key of our layout: one
 * segment (`<lease hex>[...]`), or for a read/write lock `read/<…>` or `write/<…>`. Keys deeper under the name
 * belong to other locks (`etcdctl lock lock/a/b` puts `lock/a/b/<lease>`, under our lock `a`): never ahead of us.
 */
export function isQueueKey(kind: KeyKind, rest: string): boolean {
  const slash = rest.indexOf('/');
  if (rest.length === 0) return false;
  if (slash < 0) return kind !== 'rwlock';
  if (kind !== 'rwlock') return false;
  const mode = rest.slice(0, slash);
  return (mode === 'read' || mode === 'write') && slash < rest.length - 1 && !rest.includes('/', slash + 1);
}
