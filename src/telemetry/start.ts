import { tracingRequested } from './requested.js';

export interface Telemetry {
  /** True when the SDK runs: log lines then carry `trace_id` and `span_id`. */
  readonly tracing: boolean;
  /** Exports what is still buffered, within a bound: a receiver that hangs never holds up the exit. */
  shutdown(): Promise<void>;
}

const OFF: Telemetry = { tracing: false, shutdown: async () => undefined };

/**
 * Starts OpenTelemetry tracing when the OTEL_* variables ask for it. Called by the CLI's main before
 * it imports the service, because the instrumentations must hook pg, ioredis and node:http before
 * anything loads them. Off, the SDK is not even imported: the only part of OpenTelemetry the
 * service then loads is `@opentelemetry/api`, whose no-op answers cost nothing per request.
 */
export async function startTelemetry(env: Readonly<Record<string, string | undefined>>, version: string): Promise<Telemetry> {
  if (!tracingRequested(env)) return OFF;
  const { startTracing } = await import('./tracing.js');
  return startTracing(version);
}
