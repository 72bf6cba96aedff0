import type { Etcd3, IOptions } from 'etcd3';
import type { Clock } from '../clock/clock.js';

/** Options of `EtcdLockModule.forRoot()` / `forRootAsync()`. All are optional. */
export interface EtcdLockOptions {
  /** etcd endpoints. Default `http://127.0.0.1:2379`. Ignored (and rejected) when `client` is given. */
  hosts?: string | string[];
  /** etcd3 client options (auth, TLS credentials, gRPC options) other than `hosts`. */
  etcd?: Omit<IOptions, 'hosts'>;
  /** An `Etcd3` client the app already has. We use it and never close it. */
  client?: Etcd3;
  /** Prepended to every key we write, e.g. `'myapp/'`. Default `''`. */
  prefix?: string;
  /** Session lease time-to-live in whole seconds, at least 2. Default 10. */
  ttl?: number;
  /** This instance's name, stored as the value of its lock and election keys. Default `<hostname>:<pid>`. */
  identity?: string;
  /** How long start-up (and a re-grant) waits for etcd before failing, in ms. Default 5000. */
  connectTimeout?: number;
  /** Deadline of each etcd request, in ms. Default 5000. */
  requestTimeout?: number;
  /** Name of the default election, used by `@LeaderOnly()` without an argument. Default `'leader'`. */
  election?: string;
  /**
   * This instance's priority as a leader, in every election it campaigns in (a finite number; a build number or
   * a version makes a rolling deploy move leadership once). A leader that sees a candidate of a higher priority
   * hands over to it at a safe point (its term ends, its work drains, then `transfer`); among equals the incumbent
   * keeps leading. Set it on every replica: a leader without it never yields. Default: none.
   */
  leaderPriority?: number;
  /**
   * Bound every leadership term of this instance, in ms: when it passes, the term's signal aborts with reason
   * `max-hold`, its leader-only work drains, and the leadership goes to the next candidate (by `transfer`), or, with
   * nobody else, to a new term of this instance. Default: none.
   */
  maxTermMs?: number;
  /** How long shutdown waits for running leader-only and singleton methods, in ms. Default 10000. */
  shutdownTimeout?: number;
  /**
   * OpenTelemetry metrics and spans, recorded when the app has `@opentelemetry/api`. `enabled: false` turns them
   * off; `lockNames: true` adds the lock name as a metric attribute (off by default: lock names can be unbounded,
   * e.g. `order:42`). Spans always name the lock.
   */
  telemetry?: {
    /** Record metrics and spans when an OpenTelemetry SDK is registered. Default true. */
    enabled?: boolean;
    /** Add the lock name (`etcd_lock.lock.name`) to lock metrics. Default false. */
    lockNames?: boolean;
  };
  /**
   * The clock the library's deadlines and timers run on (the session's keepalives and local deadline, `acquire`
   * timeouts, `minHoldMs`, scheduled jobs' fire times). Default: the system's. For tests: `ManualClock` from
   * `nestjs-etcd-lock/testing`.
   */
  clock?: Clock;
}

/** Injection token of the module options; shares its name with the interface. */
export const EtcdLockOptions = Symbol('EtcdLockOptions');
