import type { Clock } from '../clock/clock.js';
import type { EtcdPort } from '../etcd/etcd-port.js';
import { watchInventory } from '../inventory/inventory-watch.js';
import type { JobRun } from '../scheduling/job-record.js';
import type { JobControls } from '../scheduling/job-controls.js';
import type { JobStatus } from '../scheduling/job-status.js';
import { Backoff } from '../util/backoff.js';
import { messageOf } from '../util/error-message.js';
import { sleep } from '../util/wait-signal.js';
import { type DashboardView, DashboardHistory } from './dashboard-view.js';

/** What a page is sent: the view after each change, or why there is none right now. */
export type FeedMessage = { readonly view: DashboardView } | { readonly error: string; readonly at: number };

/** The runs of each job the page shows. */
const RUNS_SHOWN = 10;

/**
 * The pages' one view of etcd: a single set of watches (the inventory's, one per key root), started when the first
 * page subscribes and stopped when the last leaves, however many pages are open. After each change etcd reports,
 * the inventory is read once and every page gets the same view; nothing is polled.
 */
export class DashboardFeed {
  private readonly listeners = new Set<(message: FeedMessage) => void>();
  private readonly history = new DashboardHistory();
  private latest: FeedMessage | undefined;
  /** The jobs as last read. */
  private jobsRead: Array<{ status: JobStatus; runs: JobRun[] }> = [];
  private running: { stop: AbortController; done: Promise<void> } | undefined;

  constructor(
    private readonly rpc: EtcdPort,
    private readonly jobs: JobControls,
    private readonly context: {
      readonly prefix: string;
      readonly endpoints: readonly string[];
      readonly actions: boolean;
      readonly clock: Clock;
    },
  ) {}

  /** How many pages listen now. */
  get pages(): number {
    return this.listeners.size;
  }

  /** Calls `listener` with the latest message at once (if any), then after each change; returns the unsubscribe. */
  subscribe(listener: (message: FeedMessage) => void): () => void {
    this.listeners.add(listener);
    if (this.latest) listener(this.latest);
    if (!this.running) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) void this.stop();
    };
  }

  /** Stops the watches (a page that subscribes later starts them again). */
  async stop(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    this.latest = undefined;
    running?.stop.abort();
    await running?.done;
  }

  private start(): void {
    const stop = new AbortController();
    const done = this.run(stop.signal);
    this.running = { stop, done };
  }

  private async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(250, 5000);
    while (!signal.aborted) {
      try {
        await watchInventory(
          this.rpc,
          this.context.prefix,
          async (inv) => {
            // The locks, leaders and shards first, with the jobs as last read: the jobs' reads (1 + 3 per job) stay
            // out of the way of a leader change. The same view again once the jobs are read (history is idempotent
            // for one inventory).
            const context = { ...this.context, readMs: inv.readMs };
            this.publish({ view: this.history.view(inv, this.jobsRead, this.context.clock.now(), context) });
            backoff.reset();
            const jobs = await this.readJobs();
            if (signal.aborted) return;
            this.jobsRead = jobs;
            this.publish({ view: this.history.view(inv, jobs, this.context.clock.now(), context) });
          },
          signal,
        );
      } catch (err) {
        // Refused credentials or permissions: say so on the page, and try again later (they may be fixed).
        this.publish({ error: messageOf(err), at: this.context.clock.now() });
        await sleep(backoff.next(), signal).catch(() => undefined);
      }
    }
  }

  private publish(message: FeedMessage): void {
    this.latest = message;
    for (const listener of [...this.listeners]) {
      try {
        listener(message);
      } catch {
        // A page that went away mid-write: its own close unsubscribes it.
      }
    }
  }

  private async readJobs(): Promise<Array<{ status: JobStatus; runs: JobRun[] }>> {
    const names = await this.jobs.names();
    return Promise.all(
      names.map(async (name) => {
        const fireTimes = await this.jobs.fireTimes(name);
        const [status, runs] = await Promise.all([this.jobs.status(name, fireTimes), this.jobs.history(name, RUNS_SHOWN)]);
        return { status, runs };
      }),
    );
  }
}
