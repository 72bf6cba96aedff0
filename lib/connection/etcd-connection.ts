import { Inject, Injectable, Optional } from '@nestjs/common';
import { createEtcdClient } from '../etcd/client.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { EtcdRpc } from '../etcd/etcd-rpc.js';
import { ETCD_PORT, RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { instrumentedPort } from '../telemetry/instrumented-port.js';
import { Telemetry } from '../telemetry/telemetry.js';

/**
 * The app instance's port to etcd, injected wherever a request is made: over the etcd3 client the options
 * describe (or the app's own `client`), or the in-memory etcd the testing module provides. The session closes it
 * last at shutdown, after revoking its lease, and only if it created the client.
 */
@Injectable()
export class EtcdConnection {
  readonly port: EtcdPort;
  private readonly owned: boolean;

  constructor(
    @Inject(RESOLVED_OPTIONS) options: ResolvedEtcdLockOptions,
    telemetry: Telemetry,
    @Optional() @Inject(ETCD_PORT) given?: EtcdPort,
  ) {
    let port = given;
    this.owned = false;
    if (!port) {
      // The app's own client (`client`), or one we create and own.
      const client = options.client ?? createEtcdClient(options.hosts, options.etcd);
      port = new EtcdRpc(client, options.hosts, options.requestTimeout);
      this.owned = options.client === undefined;
    }
    this.port = telemetry.metered ? instrumentedPort(port, telemetry) : port;
  }

  /** True when `close()` closes the client (we created it). */
  get closesClient(): boolean {
    return this.owned;
  }

  /** Closes the client, if we created it. */
  close(): void {
    if (this.owned) this.port.close();
  }
}
