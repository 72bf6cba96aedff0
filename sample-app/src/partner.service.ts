import { Inject, Injectable, Logger } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { Etcd3 } from 'etcd3';
import { MaxConcurrent, ReadWriteLockService, SemaphoreService } from 'nestjs-etcd-lock';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';

/**
 * Semaphores and read/write locks: a rate-limited partner API that at most 2 replicas call at once, and a price
 * list that every replica reads while one rebuilds it.
 */
@Injectable()
export class PartnerService {
  private readonly logger = new Logger('Partner');
  readonly counts = { calls: 0, skipped: 0, rebuilds: 0, reads: 0 };

  constructor(
    private readonly rw: ReadWriteLockService,
    @Inject(Etcd3) private readonly etcd: Etcd3,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  // Recipe: at most 2 replicas call the partner API at once. A third replica's tick is skipped, not queued.
  @Interval(1500)
  @MaxConcurrent('partner-api', 2)
  async callPartner(): Promise<void> {
    const permit = SemaphoreService.current();
    this.counts.calls++;
    // Stands for the partner call; a long one should stop when permit.signal aborts (the permit was lost).
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (permit?.signal.aborted) this.logger.warn('partner call finished after its permit was lost');
  }

  // Recipe: many readers, one writer. Readers share the lock; the rebuild waits for them and keeps new readers
  // out until it is done, so nobody reads a half-written price list.
  async prices(): Promise<Record<string, string>> {
    return this.rw.withRead('prices', async () => {
      this.counts.reads++;
      return this.etcd.getAll().prefix(`${this.config.prefix}prices/`).strings();
    });
  }

  async rebuildPrices(prices: Record<string, number>): Promise<void> {
    await this.rw.withWrite('prices', async (lock) => {
      const txn = lock.fencedTxn();
      for (const [item, price] of Object.entries(prices)) txn.put(`${this.config.prefix}prices/${item}`, String(price));
      await txn.commit();
      this.counts.rebuilds++;
    });
  }
}
