import { BadRequestException, Body, Controller, Get, Inject, NotFoundException, Param, Post } from '@nestjs/common';
import { EtcdSessionService, LeaderElectionService, LockService, ShardingService } from 'nestjs-etcd-lock';
import { firstValueFrom } from 'rxjs';
import { AccountsService } from './accounts.service.js';
import { SAMPLE_CONFIG, type SampleConfig } from './config.js';
import { DirectoryService } from './directory.service.js';
import { JobsService } from './jobs.service.js';
import { PartnerService } from './partner.service.js';

@Controller()
export class AppController {
  constructor(
    private readonly elections: LeaderElectionService,
    private readonly locks: LockService,
    private readonly session: EtcdSessionService,
    private readonly accounts: AccountsService,
    private readonly jobs: JobsService,
    private readonly directory: DirectoryService,
    private readonly sharding: ShardingService,
    private readonly partner: PartnerService,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  @Get('leader')
  async leader() {
    return { leader: await this.elections.leader(), me: this.config.identity, isLeader: this.elections.isLeader() };
  }

  @Get('locks/:name')
  async lock(@Param('name') name: string) {
    const holder = await this.locks.holder(name);
    // JSON has no bigint: send the fencing token as a decimal string.
    return { name, holder: holder && { ...holder, fencingToken: holder.fencingToken.toString() } };
  }

  @Get('health')
  health() {
    const session = this.session.status();
    // JSON has no bigint: a term's fencing token is sent as a decimal string.
    const elections = this.elections.status().map((e) => ({ ...e, fencingToken: e.fencingToken?.toString() }));
    return { status: session.alive ? 'ok' : 'down', session, elections, jobs: this.jobs.counts };
  }

  /** Who owns which tenant shard now (one etcd read), and this replica's own. */
  @Get('shards')
  async shards() {
    const owners = Object.fromEntries(await this.sharding.assignment('tenants'));
    return { me: this.config.identity, mine: await firstValueFrom(this.sharding.owned('tenants')), owners };
  }

  /** The price list, read under the read lock (many readers at once). */
  @Get('prices')
  prices() {
    return this.partner.prices();
  }

  /** Replaces prices under the write lock: waits for the readers in, keeps new ones out until done. */
  @Post('prices')
  async rebuildPrices(@Body() body: Record<string, unknown>) {
    const prices = Object.fromEntries(Object.entries(body ?? {}).map(([k, v]) => [k, Number(v)]));
    if (Object.values(prices).some((v) => !Number.isFinite(v))) throw new BadRequestException('prices must be numbers');
    await this.partner.rebuildPrices(prices);
    return { rebuilt: Object.keys(prices).length };
  }

  @Get('services/:name')
  service(@Param('name') name: string) {
    return { name, value: this.directory.lookup(name) };
  }

  @Post('services/reports/state')
  async reportState(@Body() body: { state?: unknown }) {
    if (body?.state !== 'ok' && body?.state !== 'degraded') throw new BadRequestException("state must be 'ok' or 'degraded'");
    return { serving: await this.directory.report(body.state) };
  }

  @Get('accounts')
  balances() {
    return this.accounts.balances();
  }

  @Post('accounts/:id/withdraw')
  async withdraw(@Param('id') id: string, @Body() body: { amount?: unknown }) {
    const amount = Number(body?.amount);
    if (!Number.isInteger(amount) || amount <= 0) throw new BadRequestException('amount must be a positive integer');
    try {
      return await this.accounts.withdraw(id, amount);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('no account')) throw new NotFoundException(err.message);
      throw err;
    }
  }

  @Post('accounts/:id/transfer')
  async transfer(@Param('id') id: string, @Body() body: { to?: unknown; amount?: unknown }) {
    const amount = Number(body?.amount);
    if (typeof body?.to !== 'string' || !Number.isInteger(amount) || amount <= 0) {
      throw new BadRequestException('need { to: string, amount: positive integer }');
    }
    return this.accounts.transfer(id, body.to, amount);
  }
}
