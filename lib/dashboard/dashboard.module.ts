import {
  type BeforeApplicationShutdown,
  type CanActivate,
  Controller,
  type DynamicModule,
  Get,
  Header,
  Headers,
  HttpCode,
  HttpException,
  Inject,
  Injectable,
  Module,
  NotFoundException,
  Param,
  Post,
  Sse,
  StreamableFile,
  type Type,
  UseGuards,
  Body,
} from '@nestjs/common';
import { Observable, Subject, takeUntil } from 'rxjs';
import { EtcdConnection } from '../connection/etcd-connection.js';
import { InvalidOptionsError } from '../errors.js';
import { RESOLVED_OPTIONS } from '../options/etcd-lock.constants.js';
import type { ResolvedEtcdLockOptions } from '../options/etcd-lock.options.js';
import { assertOptions } from '../util/validation.js';
import { dashboardPage } from './dashboard-assets.js';
import { DashboardServer, mountPathProblem } from './dashboard-server.js';

/** `EtcdLockDashboardModule.forRoot(options)`. */
export interface EtcdLockDashboardOptions {
  /** Where the page is mounted in the app. Default `/etcd-lock`. */
  readonly path?: string;
  /**
   * Offer the actions (release a lock, resign a leader, pause, resume or trigger a job). Default false: the page is
   * read-only and the action endpoint answers 403.
   */
  readonly actions?: boolean;
  /** Guards every route of the dashboard runs behind (as `@UseGuards` takes them): your authentication. */
  readonly guards?: ReadonlyArray<Type<CanActivate> | CanActivate>;
}

const DASHBOARD_OPTIONS = Symbol('EtcdLockDashboardOptions');

/** The page server of this app: on the app's etcd connection and prefix; its feed stops before the app's session. */
@Injectable()
class DashboardHost implements BeforeApplicationShutdown {
  readonly server: DashboardServer;
  /** Ends every page's stream at shutdown, so that the HTTP server can close. */
  readonly closing = new Subject<void>();

  constructor(
    connection: EtcdConnection,
    @Inject(RESOLVED_OPTIONS) options: ResolvedEtcdLockOptions,
    @Inject(DASHBOARD_OPTIONS) dashboard: { path: string; actions: boolean },
  ) {
    this.server = new DashboardServer({
      rpc: connection.port,
      prefix: options.prefix,
      endpoints: connection.port.endpoints,
      actions: dashboard.actions,
      basePath: dashboard.path,
      by: `dashboard@${options.identity}`,
      clock: options.clock,
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.closing.next();
    this.closing.complete();
    await this.server.close();
  }
}

/** The controller for one mount path and set of guards (routes are decorators: made per `forRoot`). */
function dashboardController(path: string, guards: ReadonlyArray<Type<CanActivate> | CanActivate>): Type {
  const { csp } = dashboardPage(path, '');
  @Controller(path === '' ? '/' : path)
  @UseGuards(...guards)
  class EtcdLockDashboardController {
    constructor(@Inject(DashboardHost) private readonly host: DashboardHost) {}

    @Get()
    @Header('content-type', 'text/html; charset=utf-8')
    @Header('content-security-policy', csp)
    @Header('x-content-type-options', 'nosniff')
    @Header('referrer-policy', 'no-referrer')
    @Header('cache-control', 'no-store')
    page(): string {
      return this.host.server.page().html;
    }

    @Get('assets/:file')
    @Header('x-content-type-options', 'nosniff')
    asset(@Param('file') file: string): StreamableFile {
      const asset = this.host.server.asset(file);
      if (!asset) throw new NotFoundException();
      return new StreamableFile(asset.body, { type: asset.type });
    }

    @Sse('events')
    events(): Observable<{ data: string }> {
      return new Observable<{ data: string }>((subscriber) =>
        this.host.server.stream(
          (data) => subscriber.next({ data }),
          () => undefined,
        ),
      ).pipe(takeUntil(this.host.closing));
    }

    @Post('actions')
    @HttpCode(200)
    async act(@Body() body: unknown, @Headers() headers: Record<string, string | undefined>): Promise<{ status: number; message: string }> {
      const result = await this.host.server.act({ headers, body });
      if (result.status !== 200) throw new HttpException(result, result.status);
      return result;
    }
  }
  return EtcdLockDashboardController;
}

/**
 * Mounts the dashboard in a Nest HTTP app (Express or Fastify), on the app's `EtcdLockModule` connection:
 * `EtcdLockDashboardModule.forRoot({ path: '/etcd-lock', guards: [AdminGuard] })`. Read-only unless `actions`.
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module class, configured through its static forRoot
export class EtcdLockDashboardModule {
  /** The dashboard's routes under `options.path`; `InvalidOptionsError` for a bad path, `actions` or `guards`. */
  static forRoot(options: EtcdLockDashboardOptions = {}): DynamicModule {
    assertOptions(options, 'options', ['path', 'actions', 'guards']);
    const path = options.path ?? '/etcd-lock';
    const problem = typeof path === 'string' ? mountPathProblem(path) : `must be a string, got ${typeof path}`;
    if (problem) throw new InvalidOptionsError('dashboard.path', problem);
    if (options.actions !== undefined && typeof options.actions !== 'boolean') {
      throw new InvalidOptionsError('dashboard.actions', `must be a boolean, got ${typeof options.actions}`);
    }
    if (options.guards !== undefined && !Array.isArray(options.guards)) {
      throw new InvalidOptionsError('dashboard.guards', 'must be an array of guards (classes or instances)');
    }
    return {
      module: EtcdLockDashboardModule,
      controllers: [dashboardController(path, options.guards ?? [])],
      providers: [{ provide: DASHBOARD_OPTIONS, useValue: { path, actions: options.actions ?? false } }, DashboardHost],
    };
  }
}
