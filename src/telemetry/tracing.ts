import type { IncomingMessage } from 'node:http';
import { register } from 'node:module';
import type { Span } from '@opentelemetry/api';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { NodeSDK, resources } from '@opentelemetry/sdk-node';
import { createAddHookMessageChannel } from 'import-in-the-middle';
import type { Telemetry } from './start.js';

// Imported only when OTEL_* variables ask for tracing (src/telemetry/start.ts).

/** Probes and scrapes come every few seconds from every load balancer, kubelet and Prometheus. */
const UNTRACED_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);
/**
 * Where src/http/metrics.ts keeps the route pattern that matched ("/token", "/admin/users/:id"),
 * set when the router matched: read here when the request ends, so the HTTP span gets its route
 * without a line of tracing code on the request path.
 */
const ROUTE_PATTERN = Symbol.for('tessera.http.route-pattern');
/** The most a shutdown waits for the last spans: a receiver that never answers must not hold up the exit. */
const SHUTDOWN_BOUND_MS = 2_000;

/**
 * The OpenTelemetry Node SDK, configured by the standard variables alone (endpoint, protocol,
 * headers, sampler, resource attributes, batch settings, OTEL_SDK_DISABLED): traces only, as
 * metrics are on GET /metrics and logs on stdout.
 */
export async function startTracing(version: string): Promise<Telemetry> {
  // Node 20 ESM: the service imports pg and ioredis with `import`, which require hooks never see.
  // import-in-the-middle's loader wraps exactly the modules an instrumentation hooks, nothing else.
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);

  const sdk = new NodeSDK({
    // The base the detected resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, host, process) overrides.
    resource: resources.defaultResource().merge(resources.resourceFromAttributes({ 'service.name': 'tessera', 'service.version': version })),
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        // Tessera calls nothing over HTTP: outgoing spans would only be the exporter's own calls.
        disableOutgoingRequestInstrumentation: true,
        ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.has(pathOf(request)),
        // A query string can hold what a careless client put there (a password, a token): its
        // existence is recorded, never its content. No headers are captured (the default).
        startIncomingSpanHook: (request) => (pathOf(request) === request.url ? {} : { 'url.query': '[redacted]' }),
        applyCustomAttributesOnSpan: nameAfterRoute,
      }),
      // Statement text only: bound values stay out (enhancedDatabaseReporting off, the default).
      // Queries outside a request (key reloads, purges) would each be a trace of their own.
      new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true, ignoreConnectSpans: true }),
      // The command name only: keys name accounts and addresses, arguments hold counters and scripts.
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (command) => command }),
    ],
  });
  sdk.start();
  await waitForAllMessagesAcknowledged();

  return {
    tracing: true,
    async shutdown() {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, SHUTDOWN_BOUND_MS);
        timer.unref();
      });
      await Promise.race([sdk.shutdown().catch(() => undefined), bound]);
      clearTimeout(timer);
    },
  };
}

function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** `POST /token`, `GET /admin/users/:id`: the span's name and http.route from the pattern that matched. */
function nameAfterRoute(span: Span, request: unknown): void {
  const route = (request as Record<symbol, unknown>)[ROUTE_PATTERN];
  if (typeof route !== 'string') return;
  span.setAttribute('http.route', route);
  span.updateName(`${(request as IncomingMessage).method ?? 'GET'} ${route}`);
}
