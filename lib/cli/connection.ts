import { readFileSync } from 'node:fs';
import type { IOptions } from 'etcd3';
import { createEtcdClient } from '../etcd/client.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { EtcdRpc } from '../etcd/etcd-rpc.js';
import { CliError, ExitCode } from './cli-error.js';

/** The connection flags, as etcdctl names them (and its environment variables, `ETCDCTL_*`). */
export interface ConnectionFlags {
  readonly endpoints: string;
  readonly prefix: string;
  readonly user?: string;
  readonly password?: string;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly commandTimeout: string;
}

export interface Connection {
  readonly rpc: EtcdPort;
  readonly endpoints: readonly string[];
  readonly prefix: string;
  close(): void;
}

/** A connection from the flags, with the library's client settings; nothing is sent until the first request. */
export function connect(flags: ConnectionFlags): Connection {
  const endpoints = flags.endpoints
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (endpoints.length === 0) throw new CliError(ExitCode.Usage, '--endpoints names no endpoint');
  const timeout = Number(flags.commandTimeout);
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new CliError(ExitCode.Usage, `--command-timeout must be a positive number of milliseconds, got '${flags.commandTimeout}'`);
  }
  const rpc = new EtcdRpc(
    createEtcdClient(endpoints, { auth: auth(flags), credentials: credentials(flags), dialTimeout: timeout }),
    endpoints,
    timeout,
  );
  return { rpc, endpoints, prefix: flags.prefix, close: () => rpc.close() };
}

function auth(flags: ConnectionFlags): IOptions['auth'] {
  if (flags.user === undefined) {
    if (flags.password !== undefined) throw new CliError(ExitCode.Usage, '--password needs --user (or ETCDCTL_USER)');
    return undefined;
  }
  // etcdctl's form: --user name:password, or --user name with --password.
  const colon = flags.user.indexOf(':');
  const username = colon >= 0 ? flags.user.slice(0, colon) : flags.user;
  const password = colon >= 0 ? flags.user.slice(colon + 1) : flags.password;
  if (!username) throw new CliError(ExitCode.Usage, '--user names no user');
  if (password === undefined) {
    throw new CliError(
      ExitCode.Usage,
      `--user '${username}' needs a password: --user ${username}:PASSWORD, --password, or ETCDCTL_PASSWORD`,
    );
  }
  return { username, password };
}

function credentials(flags: ConnectionFlags): IOptions['credentials'] {
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    throw new CliError(ExitCode.Usage, '--cert and --key go together (a client certificate and its private key)');
  }
  if (flags.cacert === undefined) {
    if (flags.cert !== undefined)
      throw new CliError(ExitCode.Usage, '--cert and --key need --cacert (the CA that signed etcd’s certificate)');
    return undefined;
  }
  return {
    rootCertificate: read(flags.cacert, '--cacert'),
    certChain: flags.cert === undefined ? undefined : read(flags.cert, '--cert'),
    privateKey: flags.key === undefined ? undefined : read(flags.key, '--key'),
  };
}

function read(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(ExitCode.Usage, `cannot read the ${flag} file '${path}': ${(err as Error).message}`);
  }
}
