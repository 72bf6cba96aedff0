import { Inject, Injectable, Logger } from '@nestjs/common';
import { DeletionWatches } from '../connection/deletion-watches.js';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { EtcdLockEvents, type HoldKind } from '../events/etcd-lock.events.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdSessionService } from '../session/session.service.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { HoldPath } from './hold-path.js';

/** What every lock-like hold needs, injected once: each service asks for its kind's `HoldPath`. */
@Injectable()
export class HoldPaths {
  readonly logger = new Logger('EtcdLock');

  constructor(
    readonly sessions: EtcdSessionService,
    readonly events: EtcdLockEvents,
    @Inject(RESOLVED_OPTIONS) readonly options: ResolvedEtcdLockOptions,
    readonly connection: EtcdConnection,
    readonly watches: DeletionWatches,
    readonly telemetry: Telemetry,
  ) {}

  /** The path of `kind`'s holds; `label` names a hold in log lines (`Lock 'x'`). */
  for(kind: HoldKind, label: (name: string) => string): HoldPath {
    return new HoldPath(kind, label, this);
  }
}
