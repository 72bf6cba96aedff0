/**
 * Every error this library throws extends `EtcdLockError`, so `catch (e) { if (e instanceof EtcdLockError) … }`
 * separates our failures from the guarded code's own.
 */
export class EtcdLockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** `acquire` did not get the lock within its `timeout`. Its queue key has been deleted. */
export class LockTimeoutError extends EtcdLockError {
  constructor(
    /** The lock's name. */
    readonly lockName: string,
    /** The `timeout` that passed, in ms. */
    readonly timeoutMs: number,
  ) {
    super(`Timed out after ${timeoutMs} ms waiting for lock '${lockName}'`);
  }
}

/** A `@Singleton({ onBusy: 'throw' })` method was called while its lock was held elsewhere. */
export class LockBusyError extends EtcdLockError {
  constructor(
    /** The lock's name. */
    readonly lockName: string,
  ) {
    super(`Lock '${lockName}' is held by someone else`);
  }
}

/** Why a held lock (or a place in its queue) stopped being ours. */
export type LockLossReason = 'session-lost' | 'key-deleted' | 'fence-failed' | 'shutdown' | 'max-hold';

const lossText: Record<LockLossReason, string> = {
  'session-lost': 'the etcd session (lease) of this instance was lost',
  'key-deleted': 'its key was deleted in etcd by someone else (or its lease was revoked or expired)',
  'fence-failed': 'a fenced transaction found that the lock key is no longer ours',
  shutdown: 'the application is shutting down (its session lease was revoked)',
  'max-hold': 'it was held longer than its maxHoldMs (it is released once the work settles)',
};

/**
 * Ownership of a lock ended without `release()`: a held lock's `signal` aborts with this error, and a waiter
 * whose queue key disappears rejects with it.
 */
export class LockLostError extends EtcdLockError {
  constructor(
    /** The lock's name. */
    readonly lockName: string,
    /** How it was lost. */
    readonly reason: LockLossReason,
    options?: { cause?: unknown },
  ) {
    super(`Lock '${lockName}' was lost: ${lossText[reason]}`, options);
  }
}

/** How a leadership term ended. */
export type LeadershipLossReason = 'session-lost' | 'key-deleted' | 'resigned' | 'shutdown' | 'transferred' | 'max-hold';

const termEndText: Record<LeadershipLossReason, string> = {
  'session-lost': 'the etcd session (lease) of this instance was lost (its local deadline passed, or the lease was revoked or expired)',
  'key-deleted': 'its election key was deleted in etcd by someone else',
  resigned: 'this instance resigned',
  shutdown: 'this instance is shutting down',
  transferred: 'this instance handed the leadership to another (transfer)',
  'max-hold': 'the term lasted its maxTermMs',
};

/** The reason a `Leadership`'s `signal` aborts with: the term ended, and another instance may lead from now on. */
export class LeadershipLostError extends EtcdLockError {
  constructor(
    /** The election's name. */
    readonly election: string,
    /** How the term ended. */
    readonly reason: LeadershipLossReason,
    /** The ended term's fencing token. */
    readonly fencingToken: bigint,
  ) {
    super(`Leadership of election '${election}' (term ${fencingToken}) ended: ${termEndText[reason]}`);
  }
}

/** A leader-only request (`transfer`) was made on an instance that does not lead the election now. */
export class NotLeaderError extends EtcdLockError {
  constructor(
    /** The election's name. */
    readonly election: string,
  ) {
    super(`This instance does not lead election '${election}': only the leader can transfer it`);
  }
}

/** `transfer(election, to)` named an instance that is not a candidate in the election (or there is none). */
export class UnknownCandidateError extends EtcdLockError {
  constructor(
    /** The election's name. */
    readonly election: string,
    /** The identity asked for; undefined when any next candidate would do and there is none. */
    readonly identity: string | undefined,
  ) {
    super(
      identity === undefined
        ? `Election '${election}' has no other candidate to transfer the leadership to`
        : `'${identity}' is not a candidate in election '${election}': the leadership was not transferred`,
    );
  }
}

/** Why this instance stopped owning a shard. */
export type ShardLossReason = 'moved' | 'left' | 'shutdown' | LockLossReason;

const shardLossText: Record<ShardLossReason, string> = {
  ...lossText,
  moved: 'the assignment gave it to another member',
  left: 'this instance left the group',
  shutdown: 'this instance is shutting down',
};

/** The reason a `Shard`'s `signal` aborts with: another member may own the shard from now on. */
export class ShardLostError extends EtcdLockError {
  constructor(
    /** The sharding group. */
    readonly group: string,
    /** The shard's index. */
    readonly shard: number,
    /** Why it was lost. */
    readonly reason: ShardLossReason,
    /** The fencing token this instance owned it under. */
    readonly fencingToken: bigint,
  ) {
    super(`Shard ${shard} of group '${group}' (token ${fencingToken}) is no longer owned here: ${shardLossText[reason]}`);
  }
}

/**
 * The group's assignment in etcd counts its shards differently from this instance (another version of the app
 * is running): this instance owns none of its shards until the members with the other count are gone.
 */
export class ShardCountMismatchError extends EtcdLockError {
  constructor(
    /** The sharding group. */
    readonly group: string,
    /** The count this instance declared. */
    readonly shards: number,
    /** The count in force in etcd. */
    readonly inForce: number,
  ) {
    super(
      `Sharding group '${group}' has ${inForce} shards in etcd, but this instance declares ${shards}; it owns no shard ` +
        'until every member with the other count has left',
    );
  }
}

/** The reason a held lock's `signal` aborts with when the holder released it itself. */
export class LockReleasedError extends EtcdLockError {
  constructor(
    /** The lock's name. */
    readonly lockName: string,
  ) {
    super(`Lock '${lockName}' was released`);
  }
}

/**
 * etcd could not be reached, or this instance has no live session right now. Guarded code never runs in
 * that case (we do not fail open).
 */
export class EtcdUnavailableError extends EtcdLockError {
  constructor(
    /** What failed, without the endpoints. */
    readonly problem: string,
    /** The etcd endpoints the library was configured with. */
    readonly endpoints: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`${problem} (etcd endpoints: ${endpoints.join(', ')})`, options);
  }
}

/**
 * etcd answered, but refused the request (authentication failed, permission denied, a malformed request).
 * Retrying will not help until the configuration changes.
 */
export class EtcdRequestError extends EtcdLockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Why etcd refused us access: the credentials, or the role's permissions. */
export type AccessDeniedReason = 'authentication-failed' | 'permission-denied';

/**
 * etcd refused the credentials given in the `etcd.auth` option, or the user's role lacks read/write permission on
 * the keys under the library's `prefix`. The message says which and never contains the credentials.
 */
export class EtcdAccessDeniedError extends EtcdRequestError {
  constructor(
    /** Credentials refused, or a permission missing. */
    readonly reason: AccessDeniedReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A method of the public API was called with an argument it cannot accept. Nothing was sent to etcd. */
/** A scheduled job that neither this app declares nor etcd knows was named (a typo, or a job since removed). */
export class UnknownJobError extends EtcdLockError {
  constructor(
    /** The name given. */
    readonly job: string,
  ) {
    super(`No scheduled job '${job}' here: declare it with @ScheduledJob on a method with @Cron or @Interval`);
  }
}

export class InvalidArgumentError extends EtcdLockError {
  constructor(
    /** The argument's name, e.g. `options.timeout`. */
    readonly argument: string,
    problem: string,
  ) {
    super(`Invalid argument '${argument}': ${problem}`);
  }
}

/** `EtcdLockModule` options are invalid; the app does not start. */
export class InvalidOptionsError extends EtcdLockError {
  constructor(
    /** The option's name, e.g. `ttl` or `etcd.hosts`. */
    readonly field: string,
    problem: string,
  ) {
    super(`Invalid EtcdLockModule option '${field}': ${problem}`);
  }
}
