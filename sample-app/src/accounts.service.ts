import { Inject, Injectable } from '@nestjs/common';
import { LockService } from 'nestjs-etcd-lock';
import { Etcd3 } from 'etcd3';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';

export type WithdrawResult = { accepted: true; balance: number } | { accepted: false; reason: string; balance: number };

/**
 * Accounts kept in etcd (`<prefix>accounts/<id>` = balance in cents), changed only under a per-account lock
 * and written with `fencedTxn()`: a replica that lost its lock (paused, partitioned) can never overwrite a
 * newer holder's write.
 */
@Injectable()
export class AccountsService {
  constructor(
    private readonly locks: LockService,
    private readonly etcd: Etcd3,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  key(id: string): string {
    return `${this.config.prefix}accounts/${id}`;
  }

  async balances(): Promise<Record<string, number>> {
    const all = await this.etcd.getAll().prefix(`${this.config.prefix}accounts/`).strings();
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.split('/').pop() as string, Number(v)]));
  }

  // Recipe: per-entity lock with fencing.
  async withdraw(id: string, amount: number): Promise<WithdrawResult> {
    return this.locks.withLock(
      `account:${id}`,
      async (lock) => {
        const balance = await this.read(id);
        if (balance < amount) return { accepted: false, reason: 'insufficient funds', balance };
        await lock
          .fencedTxn()
          .put(this.key(id), String(balance - amount))
          .commit();
        return { accepted: true, balance: balance - amount };
      },
      { timeout: 5000 },
    );
  }

  /** Moves money between two accounts, holding both locks (taken in name order, so two transfers never deadlock). */
  async transfer(from: string, to: string, amount: number): Promise<WithdrawResult> {
    if (from === to) return { accepted: false, reason: 'same account', balance: await this.read(from) };
    const [first, second] = [from, to].sort();
    return this.locks.withLock(`account:${first}`, (firstLock) =>
      this.locks.withLock(`account:${second}`, async (secondLock) => {
        const [fromBalance, toBalance] = [await this.read(from), await this.read(to)];
        if (fromBalance < amount) return { accepted: false, reason: 'insufficient funds', balance: fromBalance };
        // Fenced on the first lock, and on the second by comparing its key's create revision too.
        await firstLock
          .fencedTxn()
          .if(secondLock.key, 'Create', '==', secondLock.fencingToken)
          .put(this.key(from), String(fromBalance - amount))
          .put(this.key(to), String(toBalance + amount))
          .commit();
        return { accepted: true, balance: fromBalance - amount };
      }),
    );
  }

  private async read(id: string): Promise<number> {
    const value = await this.etcd.get(this.key(id)).string();
    if (value === null) throw new Error(`no account ${id}`);
    return Number(value);
  }
}
