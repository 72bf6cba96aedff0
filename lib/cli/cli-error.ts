import { EtcdAccessDeniedError, EtcdUnavailableError } from '../errors.js';
import { messageOf } from '../util/error-message.js';

/** The CLI's exit codes, documented in its help and in docs/cli.md. */
export enum ExitCode {
  Ok = 0,
  /** Anything not listed below. */
  Failed = 1,
  /** Bad flags or arguments. */
  Usage = 2,
  /** etcd did not answer. */
  Unreachable = 3,
  /** etcd refused the credentials, or the user lacks permission. */
  AccessDenied = 4,
  /** No such lock or election is held. */
  NotFound = 5,
  /** Not done: not confirmed, or the holder changed before the delete. */
  NotDone = 6,
}

/** An error the CLI reports as one line, with its exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** What to print, and the exit code, for any error a command threw. */
export function describeFailure(err: unknown, endpoints: readonly string[]): CliError {
  if (err instanceof CliError) return err;
  const cause = (err as { cause?: unknown })?.cause;
  const detail = cause instanceof Error ? cause.message : messageOf(err);
  if (err instanceof EtcdUnavailableError) {
    return new CliError(ExitCode.Unreachable, `cannot reach etcd at ${endpoints.join(', ')}: ${detail}`);
  }
  if (err instanceof EtcdAccessDeniedError) {
    return err.reason === 'authentication-failed'
      ? new CliError(
          ExitCode.AccessDenied,
          `etcd at ${endpoints.join(', ')} refused the credentials (--user/--password or ETCDCTL_USER/ETCDCTL_PASSWORD): ${detail}`,
        )
      : new CliError(
          ExitCode.AccessDenied,
          `etcd denied the user permission (it needs read access to the prefix, readwrite to release): ${detail}`,
        );
  }
  return new CliError(ExitCode.Failed, messageOf(err));
}
