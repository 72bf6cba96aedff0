import type { IncomingMessage, ServerResponse } from 'node:http';
import { Controller, Get, NotFoundException, Req, Res } from '@nestjs/common';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

let exporter: PrometheusExporter | undefined;

/**
 * Registers OpenTelemetry's metrics SDK with a Prometheus exporter, served by the app at `GET /metrics` rather
 * than on a port of the exporter's own. Call it before the Nest app is created: the library takes its meter then.
 */
export function startMetrics(): void {
  exporter = new PrometheusExporter({ preventServerStart: true });
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));
}

@Controller()
export class MetricsController {
  /** The library's metrics (and any of the app's) in Prometheus' text format. */
  @Get('metrics')
  metrics(@Req() req: IncomingMessage, @Res() res: ServerResponse): void {
    if (!exporter) throw new NotFoundException('metrics are off: the process did not call startMetrics()');
    exporter.getMetricsRequestHandler(req, res);
  }
}
