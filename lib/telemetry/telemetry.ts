import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { Attributes, Counter, Histogram, Span, Tracer, UpDownCounter } from '@opentelemetry/api';
import type { Subscription } from 'rxjs';
import { EtcdRequestError, EtcdUnavailableError, LockTimeoutError } from '../errors.js';
import { EtcdLockEventName, EtcdLockEvents, type EtcdLockEvent, type HoldKind } from '../events/etcd-lock.events.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { type Otel, otel } from './otel.js';

const SCOPE = 'nestjs-etcd-lock';
/** Seconds: from half a millisecond (an uncontended acquire) to a minute (a long wait). */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** What was asked for, as the wait histogram's `etcd_lock.operation`. */
export type AcquireOperation =
  | 'acquire'
  | 'try_acquire'
  | 'acquire_permit'
  | 'try_acquire_permit'
  | 'acquire_read'
  | 'try_acquire_read'
  | 'acquire_write'
  | 'try_acquire_write'
  | 'claim_run';

/** How an acquire ended, as the wait histogram's `etcd_lock.outcome`. */
export type AcquireOutcome = 'acquired' | 'timeout' | 'aborted' | 'unavailable' | 'busy' | 'error';

interface Instruments {
  readonly wait: Histogram;
  readonly hold: Histogram;
  readonly held: UpDownCounter;
  readonly lost: Counter;
  readonly terms: Counter;
  readonly termsEnded: Counter;
  readonly sessionLost: Counter;
  readonly sessionRenewed: Counter;
  readonly request: Histogram;
  readonly rebalances: Counter;
  readonly jobRuns: Counter;
  readonly jobLag: Histogram;
  readonly jobDuration: Histogram;
}

/** A guarded run's span, or nothing when tracing is off. */
export interface RunSpan {
  /** Sets attributes known once the run started (its fencing token). */
  set(attributes: Attributes): void;
  end(outcome: 'ran' | 'error', error?: unknown): void;
}

const NO_SPAN: RunSpan = { set: () => undefined, end: () => undefined };

/**
 * OpenTelemetry metrics and spans, through `@opentelemetry/api` when the app has it (an optional peer); without it,
 * without an SDK registered, or with `telemetry: { enabled: false }`, every method returns at once. The app's SDK
 * must be registered before the Nest app is created (this is decided once, then: the metrics API has no proxy). Lock names are
 * unbounded (`order:42`), so they are a metric attribute only with `telemetry: { lockNames: true }`; election
 * names and sharding groups, which are bounded, always are.
 */
@Injectable()
export class Telemetry implements OnApplicationShutdown {
  private readonly api: Otel | undefined;
  private readonly instruments: Instruments | undefined;
  private readonly tracer: Tracer | undefined;
  private readonly leaders = new Map<string, number>();
  private readonly shards = new Map<string, number>();
  private session: (() => number | undefined) | undefined;
  private readonly subscription: Subscription | undefined;

  /** @internal Nest constructs it. */
  constructor(
    events: EtcdLockEvents,
    @Inject(RESOLVED_OPTIONS) private readonly options: ResolvedEtcdLockOptions,
  ) {
    const api = options.telemetry.enabled ? otel() : undefined;
    if (!api) return;
    // With the API but no SDK registered (its no-op providers), record nothing and call nothing: no cost at all.
    const meter = api.metrics.getMeter(SCOPE);
    const metricsOn = meter.constructor.name !== 'NoopMeter';
    const tracerProvider = api.trace.getTracerProvider() as { getDelegate?: () => object };
    const tracesOn = (tracerProvider.getDelegate?.() ?? tracerProvider).constructor.name !== 'NoopTracerProvider';
    if (tracesOn) this.tracer = api.trace.getTracer(SCOPE);
    if (!metricsOn && !tracesOn) return;
    this.api = api;
    if (!metricsOn) return;
    const seconds = (name: string, description: string) =>
      meter.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: BUCKETS } });
    this.instruments = {
      wait: seconds('etcd_lock.lock.wait.duration', 'Time from asking for a lock to getting it or giving up'),
      hold: seconds('etcd_lock.lock.hold.duration', 'Time a lock was held, until released or lost'),
      held: meter.createUpDownCounter('etcd_lock.lock.held', { unit: '{lock}', description: 'Locks held by this instance' }),
      lost: meter.createCounter('etcd_lock.lock.lost', { unit: '{lock}', description: 'Held locks lost before their release' }),
      terms: meter.createCounter('etcd_lock.leadership.terms', { unit: '{term}', description: 'Leadership terms started here' }),
      termsEnded: meter.createCounter('etcd_lock.leadership.terms.ended', {
        unit: '{term}',
        description: 'Leadership terms ended here, by reason (transferred, resigned, key-deleted, session-lost)',
      }),
      sessionLost: meter.createCounter('etcd_lock.session.lost', { unit: '{session}', description: 'Sessions lost without our asking' }),
      sessionRenewed: meter.createCounter('etcd_lock.session.renewed', { unit: '{session}', description: 'Sessions granted after a loss' }),
      request: seconds('etcd_lock.etcd.request.duration', 'Latency of each etcd request the library sends'),
      rebalances: meter.createCounter('etcd_lock.shards.rebalances', { unit: '{change}', description: 'Changes of the shards owned here' }),
      jobRuns: meter.createCounter('etcd_lock.job.runs', { unit: '{run}', description: 'Scheduled job runs ended here, by outcome' }),
      jobLag: seconds('etcd_lock.job.lag', 'Time from a fire time to the start of its run (by the running replica’s clock)'),
      jobDuration: seconds('etcd_lock.job.duration', 'Time a scheduled job run took'),
    };
    meter
      .createObservableGauge('etcd_lock.leadership.leader', { unit: '1', description: '1 while this instance leads the election' })
      .addCallback((result) => {
        for (const [election, leader] of this.leaders) result.observe(leader, { 'etcd_lock.election': election });
      });
    meter
      .createObservableGauge('etcd_lock.session.remaining', { unit: 's', description: 'Time left before the session’s local deadline' })
      .addCallback((result) => {
        const ms = this.session?.();
        if (ms !== undefined) result.observe(ms / 1000);
      });
    meter
      .createObservableGauge('etcd_lock.shards.owned', { unit: '{shard}', description: 'Shards of the group owned here' })
      .addCallback((result) => {
        for (const [group, owned] of this.shards) result.observe(owned, { 'etcd_lock.shard_group': group });
      });
    this.subscription = events.events$.subscribe((event) => this.count(event));
  }

  /** Whether spans or metrics are recorded (the API is present with an SDK registered, and not disabled). */
  get enabled(): boolean {
    return this.api !== undefined;
  }

  /** Whether metrics are recorded (then etcd requests are timed). */
  get metered(): boolean {
    return this.instruments !== undefined;
  }

  /** Nest lifecycle hook. */
  onApplicationShutdown(): void {
    this.subscription?.unsubscribe();
  }

  /** @internal The session's time left, for the `etcd_lock.session.remaining` gauge. */
  observeSession(remainingMs: () => number | undefined): void {
    this.session = remainingMs;
  }

  /** @internal An acquire ended: its wait, by outcome; returns what to call when the lock it got is let go. */
  acquired(name: string, operation: AcquireOperation, outcome: AcquireOutcome, start: number): (() => void) | undefined {
    const instruments = this.instruments;
    if (!instruments) return undefined;
    const attributes: Attributes = { 'etcd_lock.operation': operation, 'etcd_lock.outcome': outcome, ...this.lockName(name) };
    instruments.wait.record((performance.now() - start) / 1000, attributes);
    if (outcome !== 'acquired') return undefined;
    const held = this.lockName(name);
    instruments.held.add(1, held);
    const since = performance.now();
    return () => {
      instruments.held.add(-1, held);
      instruments.hold.record((performance.now() - since) / 1000, held);
    };
  }

  /** @internal The outcome of a failed acquire. */
  acquireOutcome(err: unknown, signal: AbortSignal | undefined): AcquireOutcome {
    if (err instanceof LockTimeoutError) return 'timeout';
    if (signal?.aborted && err === signal.reason) return 'aborted';
    return err instanceof EtcdUnavailableError ? 'unavailable' : 'error';
  }

  /** @internal One etcd request done. */
  request(kind: string, outcome: string, start: number): void {
    this.instruments?.request.record((performance.now() - start) / 1000, { 'etcd_lock.request': kind, 'etcd_lock.outcome': outcome });
  }

  /** @internal How a request failed, as its `etcd_lock.outcome`. */
  outcomeOf(err: unknown): string {
    if (err instanceof EtcdUnavailableError) return 'unavailable';
    return err instanceof EtcdRequestError ? 'refused' : 'error';
  }

  /** @internal A span for an acquire (the wait), ended with the outcome and the fencing token. */
  acquireSpan(name: string, kind: HoldKind): ((outcome: AcquireOutcome, token?: bigint) => void) | undefined {
    const tracer = this.tracer;
    if (!tracer) return undefined;
    const span = tracer.startSpan('etcd_lock acquire', { attributes: { 'etcd_lock.lock.name': name, 'etcd_lock.kind': kind } });
    return (outcome, token) => {
      span.setAttribute('etcd_lock.outcome', outcome);
      if (token !== undefined) span.setAttribute('etcd_lock.fencing_token', token.toString());
      if (outcome !== 'acquired' && outcome !== 'busy') span.setStatus({ code: 2 });
      span.end();
    };
  }

  /**
   * @internal Runs `fn` inside a span for a guarded run (`@Singleton`, `@LeaderOnly`, `@Sharded`), active so the
   * run's own spans are its children.
   */
  run<T>(name: string, attributes: Attributes, fn: (span: RunSpan) => T): T {
    const api = this.api;
    const tracer = this.tracer;
    if (!api || !tracer) return fn(NO_SPAN);
    return tracer.startActiveSpan(name, { attributes }, (span) => fn(runSpan(span)));
  }

  private lockName(name: string): Attributes {
    return this.options.telemetry.lockNames ? { 'etcd_lock.lock.name': name } : {};
  }

  private count(event: EtcdLockEvent): void {
    const instruments = this.instruments;
    if (!instruments) return;
    switch (event.type) {
      case EtcdLockEventName.LockLost:
        // A clean shutdown's revoke ends every hold: not a loss to count.
        if (event.reason === 'shutdown') break;
        instruments.lost.add(1, { 'etcd_lock.kind': event.kind, 'etcd_lock.reason': event.reason, ...this.lockName(event.name) });
        break;
      case EtcdLockEventName.LeadershipChanged:
        this.leaders.set(event.election, event.leader ? 1 : 0);
        if (event.leader) instruments.terms.add(1, { 'etcd_lock.election': event.election });
        else if (event.reason !== undefined && event.reason !== 'shutdown') {
          instruments.termsEnded.add(1, { 'etcd_lock.election': event.election, 'etcd_lock.reason': event.reason });
        }
        break;
      case EtcdLockEventName.SessionLost:
        instruments.sessionLost.add(1, { 'etcd_lock.reason': event.reason });
        break;
      case EtcdLockEventName.SessionRenewed:
        instruments.sessionRenewed.add(1);
        break;
      case EtcdLockEventName.ShardsChanged:
        this.shards.set(event.group, event.shards.length);
        instruments.rebalances.add(1, { 'etcd_lock.shard_group': event.group });
        break;
      case EtcdLockEventName.JobRunStarted: {
        const { run } = event;
        const lag = (run.startedAt?.getTime() ?? run.fireTime.getTime()) - run.fireTime.getTime();
        instruments.jobLag.record(Math.max(0, lag) / 1000, { 'etcd_lock.job': run.job, 'etcd_lock.job.kind': run.kind });
        break;
      }
      case EtcdLockEventName.JobRunEnded: {
        const { run } = event;
        const attributes = { 'etcd_lock.job': run.job, 'etcd_lock.job.kind': run.kind, 'etcd_lock.outcome': run.outcome };
        instruments.jobRuns.add(1, attributes);
        if (run.startedAt && run.endedAt)
          instruments.jobDuration.record((run.endedAt.getTime() - run.startedAt.getTime()) / 1000, attributes);
        break;
      }
    }
  }
}

function runSpan(span: Span): RunSpan {
  return {
    set: (attributes) => span.setAttributes(attributes),
    end: (outcome, error) => {
      span.setAttribute('etcd_lock.outcome', outcome);
      if (error !== undefined) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({ code: 2 });
      }
      span.end();
    },
  };
}
