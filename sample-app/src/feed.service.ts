import { setTimeout as sleep } from 'node:timers/promises';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { type Leadership, OnLeadership } from 'nestjs-etcd-lock';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';

/**
 * Work held while leading: one replica at a time follows a feed and records its position in etcd. Nest calls
 * `follow` each time this replica becomes leader; the loop ends when the term does (its signal aborts).
 */
@Injectable()
export class FeedService {
  private readonly logger = new Logger('Feed');
  readonly counts = { terms: 0, writes: 0 };

  constructor(@Inject(SAMPLE_CONFIG) private readonly config: SampleConfig) {}

  // Recipe: leader-held feed, fenced by its term.
  @OnLeadership()
  async follow(leadership: Leadership): Promise<void> {
    this.counts.terms++;
    this.logger.log(`feed followed (term ${leadership.fencingToken})`);
    const cursor = `${this.config.prefix}feed/cursor`;
    let position = 0;
    while (!leadership.signal.aborted) {
      position++;
      // Fenced: etcd refuses the write of a deposed leader, even one that has not heard yet (a long pause).
      await leadership.fencedTxn().put(cursor, `${this.config.identity}:${leadership.fencingToken}:${position}`).commit();
      this.counts.writes++;
      await sleep(1000, undefined, { signal: leadership.signal }); // rejects when the term ends: the work stops
    }
  }
}
