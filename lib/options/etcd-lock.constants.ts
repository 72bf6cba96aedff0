/** Injection token of the validated options with defaults filled in (internal). */
export const RESOLVED_OPTIONS = Symbol('EtcdLockResolvedOptions');

/**
 * Injection token of the runner that `@LeaderOnly`/`@Singleton` methods need. Spelled as an instruction: if the
 * module is missing, Nest's start-up error prints this token.
 */
export const RUNNER_TOKEN = 'EtcdLockModule (import EtcdLockModule.forRoot() to use @LeaderOnly/@Singleton)';

/** Metadata on a `@LeaderOnly` method: `{ election?: string }`. */
export const LEADER_ONLY_METADATA = 'etcd-lock:leader-only';
/** Metadata on a `@Singleton` method: `{ key, options }`. */
export const SINGLETON_METADATA = 'etcd-lock:singleton';
/** Metadata key of `@OnLeadership` methods. */
export const ON_LEADERSHIP_METADATA = 'etcd-lock:on-leadership';

/** @internal Injection token of a port to etcd given instead of a client: the testing module's in-memory etcd. */
export const ETCD_PORT = Symbol('EtcdLockPort');
/** Metadata on a `@Sharded` method: `{ group, options }`. */
export const SHARDED_METADATA = 'etcd-lock:sharded';
/** Metadata on a `@MaxConcurrent` method: `{ key, limit, options }`. */
export const MAX_CONCURRENT_METADATA = 'etcd-lock:max-concurrent';
export const SCHEDULED_JOB_METADATA = 'etcd-lock:scheduled-job';
