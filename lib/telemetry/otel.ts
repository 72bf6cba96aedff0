import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';

/** The OpenTelemetry API, when the app has `@opentelemetry/api` installed (an optional peer); else undefined. */
export type Otel = typeof OtelApi;

let loaded: Otel | null | undefined;

/**
 * Loads `@opentelemetry/api` once, synchronously (it ships CommonJS; its global registry is shared with any ESM
 * copy the app imports, so the app's SDK is found either way).
 */
export function otel(): Otel | undefined {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('@opentelemetry/api') as Otel;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}
