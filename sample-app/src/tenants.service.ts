import { Inject, Injectable, Logger } from '@nestjs/common';
import { Cron } from '@nestjs/schedule';
import { Sharded, ShardingService } from 'nestjs-etcd-lock';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';

/** The tenants the app syncs: in a real app, a query per shard (`WHERE shard = ANY($1)`) or a list. */
export const TENANTS = Array.from({ length: 40 }, (_, i) => `tenant-${i + 1}`);

/**
 * Sharded work: every replica syncs its share of the tenants every 2 s, and each tenant is synced by exactly one
 * replica per tick. Replicas that come and go take or hand over shards; a crashed replica's shards wait for its
 * lease to expire.
 */
@Injectable()
export class TenantsService {
  private readonly logger = new Logger('Tenants');
  readonly counts = { runs: 0, synced: 0 };

  constructor(@Inject(SAMPLE_CONFIG) private readonly config: SampleConfig) {}

  // Recipe: sharded tenant sync. Every replica runs it for the shards it owns; a tenant's writes are fenced by
  // its shard, so a replica that lost the shard (a long pause) cannot write over the new owner.
  @Cron('*/2 * * * * *')
  @Sharded('tenants', { shards: 16, minHoldMs: 1000 })
  async sync(): Promise<void> {
    const shards = ShardingService.current();
    if (!shards) return;
    const mine = TENANTS.filter((tenant) => shards.owns(tenant));
    for (const tenant of mine) {
      const shard = shards.shardFor(tenant);
      if (!shard) continue; // moved away during this run: its new owner syncs it
      await shard.fencedTxn().put(`${this.config.prefix}tenants/${tenant}`, `${this.config.identity}:${shard.fencingToken}`).commit();
      this.counts.synced++;
    }
    this.counts.runs++;
    this.logger.log(`synced ${mine.length} tenants of shards [${shards.shards.map((s) => s.index).join(', ')}]`);
  }
}
