import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { type Lock, LockService } from 'nestjs-etcd-lock';
import { map, type Observable, type Subscription } from 'rxjs';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';

/**
 * Two recipes built on a lock's value and `watch()`:
 * - Name server: the holder of lock `service:<name>` serves that name, its value is its address; replicas queue
 *   behind it, and when it goes away the next one takes over and the address changes for every watcher.
 * - Health monitoring: the holder changes its value (`setValue`) to report its state; watchers see `null` the
 *   moment it is gone (its lease ended), with no heartbeat polling.
 */
@Injectable()
export class DirectoryService implements OnApplicationBootstrap, OnApplicationShutdown {
  private registration: Lock | undefined;
  private readonly abort = new AbortController();
  private readonly known = new Map<string, string | null>();
  private readonly subscriptions: Subscription[] = [];

  constructor(
    private readonly locks: LockService,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  onApplicationBootstrap(): void {
    // Queue to serve 'reports' without blocking start-up: acquire resolves when it is our turn.
    const address = `http://127.0.0.1:${this.config.port} ok`;
    this.locks
      .acquire('service:reports', { value: address, signal: this.abort.signal })
      .then((lock) => (this.registration = lock))
      .catch(() => undefined); // aborted at shutdown
    this.subscriptions.push(this.follow('reports').subscribe((value) => this.known.set('reports', value)));
  }

  onApplicationShutdown(): void {
    this.abort.abort();
    for (const s of this.subscriptions) s.unsubscribe();
  }

  /** The address and state of whoever serves `name`, or null if nobody does. */
  follow(name: string): Observable<string | null> {
    return this.locks.watch(`service:${name}`).pipe(map((holder) => (holder ? holder.value : null)));
  }

  /** The last known value for `name` (kept current by the watch). */
  lookup(name: string): string | null {
    return this.known.get(name) ?? null;
  }

  /** Reports this replica's state, if it is the one serving. */
  async report(state: 'ok' | 'degraded'): Promise<boolean> {
    if (!this.registration?.isHeld) return false;
    await this.registration.setValue(`http://127.0.0.1:${this.config.port} ${state}`);
    return true;
  }
}
