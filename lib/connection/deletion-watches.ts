import { Inject, Injectable, Logger } from '@nestjs/common';
import { type KeyKind, kindPrefix } from '../etcd/keys.js';
import { DeleteWatch } from '../queue/delete-watch.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { EtcdConnection } from './etcd-connection.js';
import { messageOf } from '../util/error-message.js';

/** The app instance's deletion watches, one set per kind of key (locks, elections). The session closes them. */
@Injectable()
export class DeletionWatches {
  private readonly logger = new Logger('EtcdLock');
  private readonly kinds = new Map<KeyKind, DeleteWatch>();

  constructor(
    private readonly connection: EtcdConnection,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
  ) {}

  /** The deletion watches of one kind of key, one per name this instance waits on or holds. */
  of(kind: KeyKind): DeleteWatch {
    let watch = this.kinds.get(kind);
    if (!watch) {
      watch = new DeleteWatch(
        this.connection.port,
        kindPrefix(this.options.prefix, kind),
        (err) => this.logger.warn(`Watch on ${kind} keys restarted: ${messageOf(err)}`),
        this.options.clock,
        // A permit's and a read or write lock's key is named by a sequence: once deleted, its name never returns.
        kind !== 'semaphore' && kind !== 'rwlock',
      );
      this.kinds.set(kind, watch);
    }
    return watch;
  }

  async close(): Promise<void> {
    // A client we close next ends every watch at once; cancel them one by one only on a client we leave open.
    const cancel = !this.connection.closesClient;
    await Promise.all([...this.kinds.values()].map((watch) => watch.close({ cancel })));
  }
}
