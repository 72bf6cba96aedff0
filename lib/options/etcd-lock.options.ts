import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import { InvalidOptionsError } from '../errors.js';
import type { EtcdLockOptions } from './etcd-lock-options.interface.js';
import { describe, durationProblem, MAX_DURATION_MS, nameProblem } from '../util/validation.js';
import { unprintableIn } from '../util/printable.js';
import { type Clock, isClock, systemClock } from '../clock/clock.js';

/** Options after validation, with every default filled in. */
export interface ResolvedEtcdLockOptions {
  readonly hosts: readonly string[];
  readonly etcd: NonNullable<EtcdLockOptions['etcd']>;
  readonly client: Etcd3 | undefined;
  readonly prefix: string;
  readonly ttl: number;
  readonly identity: string;
  readonly connectTimeout: number;
  readonly requestTimeout: number;
  readonly election: string;
  readonly leaderPriority: number | undefined;
  readonly maxTermMs: number | undefined;
  readonly shutdownTimeout: number;
  readonly telemetry: { readonly enabled: boolean; readonly lockNames: boolean };
  readonly clock: Clock;
}

const KNOWN = [
  'hosts',
  'etcd',
  'client',
  'prefix',
  'ttl',
  'identity',
  'connectTimeout',
  'requestTimeout',
  'election',
  'leaderPriority',
  'maxTermMs',
  'shutdownTimeout',
  'telemetry',
  'clock',
] as const;

export const DEFAULT_HOST = 'http://127.0.0.1:2379';

/** Validates the module options once at start-up; every error names the field that is wrong. */
export function resolveOptions(raw: unknown): ResolvedEtcdLockOptions {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidOptionsError('(options)', `must be an object, got ${describe(raw)}`);
  }
  const o = raw as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(KNOWN as readonly string[]).includes(key) && key !== 'isGlobal') {
      throw new InvalidOptionsError(key, `is not a known option (known: ${KNOWN.join(', ')})`);
    }
  }
  const client = o.client === undefined ? undefined : clientOption(o.client);
  if (client && o.hosts !== undefined) throw new InvalidOptionsError('hosts', 'cannot be combined with client');
  if (client && o.etcd !== undefined) throw new InvalidOptionsError('etcd', 'cannot be combined with client');
  return {
    hosts: client ? clientHosts(client) : hostsOption(o.hosts),
    etcd: etcdOption(o.etcd),
    client,
    prefix: prefixOption(o.prefix),
    ttl: ttlOption(o.ttl),
    identity: stringOption(o, 'identity', `${hostname()}:${process.pid}`, false),
    connectTimeout: msOption(o, 'connectTimeout', 5000),
    requestTimeout: msOption(o, 'requestTimeout', 5000),
    election: electionOption(o.election),
    leaderPriority: priorityOption(o.leaderPriority),
    maxTermMs: o.maxTermMs === undefined ? undefined : msOption(o, 'maxTermMs', 0),
    shutdownTimeout: msOption(o, 'shutdownTimeout', 10000, true),
    telemetry: telemetryOption(o.telemetry),
    clock: clockOption(o.clock),
  };
}

function priorityOption(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new InvalidOptionsError('leaderPriority', `must be a finite number, got ${describe(v)}`);
  return v;
}

function clockOption(v: unknown): Clock {
  if (v === undefined) return systemClock;
  if (!isClock(v)) {
    throw new InvalidOptionsError('clock', `must be a Clock { now(), monotonic(), setTimer() } (e.g. ManualClock), got ${describe(v)}`);
  }
  return v;
}

function hostsOption(v: unknown): string[] {
  if (v === undefined) return [DEFAULT_HOST];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidOptionsError('hosts', `must be a non-empty string or array of strings, got ${describe(v)}`);
  }
  for (const h of list) {
    if (typeof h !== 'string' || h.trim() === '') {
      throw new InvalidOptionsError('hosts', `every host must be a non-empty string, got ${describe(h)}`);
    }
  }
  const secure = list.filter((h: string) => h.startsWith('https:')).length;
  if (secure > 0 && secure < list.length) {
    throw new InvalidOptionsError('hosts', 'mixes https: and plain endpoints; use one scheme for all');
  }
  return list as string[];
}

function clientOption(v: unknown): Etcd3 {
  const c = v as Partial<Etcd3> | null;
  // Duck-typed: an app may load its own copy of etcd3, so `instanceof` would reject a valid client.
  if (!c || typeof c !== 'object' || !c.kv || !c.leaseClient || typeof c.watch !== 'function') {
    throw new InvalidOptionsError('client', `must be an Etcd3 client instance, got ${describe(v)}`);
  }
  return c as Etcd3;
}

/** The endpoints of a client the app passed in, for error messages only. */
function clientHosts(client: Etcd3): string[] {
  const hosts = (client as unknown as { options?: { hosts?: string | string[] } }).options?.hosts;
  if (typeof hosts === 'string') return [hosts];
  return Array.isArray(hosts) && hosts.length > 0 ? hosts : ['(the client passed in options.client)'];
}

function etcdOption(v: unknown): NonNullable<EtcdLockOptions['etcd']> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new InvalidOptionsError('etcd', `must be an object of etcd3 client options, got ${describe(v)}`);
  }
  if ('hosts' in v) throw new InvalidOptionsError('etcd.hosts', "belongs in the top-level 'hosts' option");
  return v as NonNullable<EtcdLockOptions['etcd']>;
}

function ttlOption(v: unknown): number {
  if (v === undefined) return 10;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 2) {
    throw new InvalidOptionsError('ttl', `must be a whole number of seconds, at least 2, got ${describe(v)}`);
  }
  // The session's timers wait up to a TTL: the same bound as every duration (etcd itself allows 9e9 s).
  const max = Math.floor(MAX_DURATION_MS / 1000);
  if (v > max)
    throw new InvalidOptionsError('ttl', `must be at most ${max} seconds (about 24.8 days: Node's timers wait no longer), got ${v}`);
  return v;
}

/**
 * The key prefix: '' (etcd's own layout, `lock/<name>/…`) or a path that the library completes with '/' (`app1`
 * and `app1/` are the same prefix), so that no prefix is a string prefix of another app's keys by accident.
 */
function prefixOption(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new InvalidOptionsError('prefix', `must be a string, got ${describe(v)}`);
  const unprintable = unprintableIn(v);
  if (unprintable)
    throw new InvalidOptionsError('prefix', `must not contain control or bidirectional-override characters (found ${unprintable})`);
  if (v.startsWith('/')) throw new InvalidOptionsError('prefix', `must not start with '/' (etcd keys have no root), got '${v}'`);
  if (v.includes('//')) throw new InvalidOptionsError('prefix', `must not contain an empty segment ('//'), got '${v}'`);
  if (Buffer.byteLength(v) > 1024) throw new InvalidOptionsError('prefix', 'must be at most 1024 bytes');
  return v === '' || v.endsWith('/') ? v : `${v}/`;
}

function stringOption(o: Record<string, unknown>, field: string, fallback: string, allowEmpty: boolean): string {
  const v = o[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw new InvalidOptionsError(field, `must be a string, got ${describe(v)}`);
  if (!allowEmpty && v === '') throw new InvalidOptionsError(field, 'must not be empty');
  if (v.includes('\0')) throw new InvalidOptionsError(field, 'must not contain a NUL byte');
  if (Buffer.byteLength(v) > 1024 * 1024) throw new InvalidOptionsError(field, 'must be at most 1 MiB');
  return v;
}

function msOption(o: Record<string, unknown>, field: string, fallback: number, allowZero = false): number {
  const v = o[field];
  if (v === undefined) return fallback;
  const problem = durationProblem(v, allowZero);
  if (problem) throw new InvalidOptionsError(field, problem);
  return v as number;
}

function electionOption(v: unknown): string {
  if (v === undefined) return 'leader';
  const problem = nameProblem(v);
  if (problem) throw new InvalidOptionsError('election', problem);
  return v as string;
}

function telemetryOption(v: unknown): ResolvedEtcdLockOptions['telemetry'] {
  if (v === undefined) return { enabled: true, lockNames: false };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new InvalidOptionsError('telemetry', `must be an object { enabled?, lockNames? }, got ${describe(v)}`);
  }
  const o = v as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'enabled' && key !== 'lockNames') {
      throw new InvalidOptionsError(`telemetry.${key}`, 'is not a known option (known: enabled, lockNames)');
    }
  }
  for (const key of ['enabled', 'lockNames'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') {
      throw new InvalidOptionsError(`telemetry.${key}`, `must be a boolean, got ${describe(o[key])}`);
    }
  }
  return { enabled: o.enabled !== false, lockNames: o.lockNames === true };
}
