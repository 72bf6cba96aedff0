import { hostname } from 'node:os';

/** The sample app's configuration, from environment variables. */
export interface SampleConfig {
  /** ETCD_HOSTS: comma-separated etcd endpoints. */
  etcdHosts: string[];
  /** PORT: HTTP port. */
  port: number;
  /** IDENTITY: this replica's name. */
  identity: string;
  /** LOCK_TTL: session lease TTL in seconds. */
  ttl: number;
  /** KEY_PREFIX: prefix of every key the app writes. */
  prefix: string;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): SampleConfig {
  return {
    etcdHosts: (env.ETCD_HOSTS ?? 'http://127.0.0.1:2379').split(',').map((h) => h.trim()),
    port: Number(env.PORT ?? 3000),
    identity: env.IDENTITY ?? `${hostname()}:${process.pid}`,
    ttl: Number(env.LOCK_TTL ?? 5),
    prefix: env.KEY_PREFIX ?? 'sample/',
  };
}

export const SAMPLE_CONFIG = Symbol('SampleConfig');
