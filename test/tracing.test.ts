import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readPackageVersion } from '../src/package-root.js';
import { everyString, type ReceivedSpan, startOtlpReceiver } from './helpers/otlp-receiver.js';
import { freePort, logLines, type Serving, waitForOutput } from './helpers/process.js';
import { noteSecret } from './helpers/secrets.js';
import { fetchPasswordGrant, useServedDatabase } from './helpers/service.js';
import { waitFor } from './helpers/wait.js';

// OpenTelemetry tracing on the real binary (DESIGN.md, Observability): `tessera serve` exports to
// an OTLP receiver this file runs on loopback, in both OTLP/HTTP encodings.

const served = useServedDatabase();
const serve = served.serve;

/** SIGTERM, then the exit code, once the process has written its last lines. */
async function stop({ server }: Serving): Promise<number | null> {
  server.child.kill('SIGTERM');
  const { code } = await server.exited;
  await waitForOutput(server);
  return code;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** The span's ancestors in `spans`, nearest first. */
function ancestors(span: ReceivedSpan, spans: readonly ReceivedSpan[]): ReceivedSpan[] {
  const chain: ReceivedSpan[] = [];
  for (let parent = spans.find((each) => each.spanId === span.parentSpanId); parent; parent = spans.find((each) => each.spanId === parent!.parentSpanId)) {
    chain.push(parent);
  }
  return chain;
}

const isPostgres = (span: ReceivedSpan) => span.attributes['db.system.name'] === 'postgresql' || span.attributes['db.system'] === 'postgresql';
const isRedis = (span: ReceivedSpan) => span.attributes['db.system.name'] === 'redis' || span.attributes['db.system'] === 'redis';

describe('tracing', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`exports a password grant sent with a traceparent as one trace: HTTP, grant, Argon2, PostgreSQL and Redis spans, no secret (${protocol})`, { timeout: 90_000 }, async () => {
      const receiver = await startOtlpReceiver();
      try {
        const serving = await serve({
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_SERVICE_NAME: 'tessera-under-test',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
          OTEL_BSP_SCHEDULE_DELAY: '100',
        });
        const traceId = hex(16);
        const callerSpanId = hex(8);
        const login = await fetch(`${serving.base}/token`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: served.client.basic,
            traceparent: `00-${traceId}-${callerSpanId}-01`,
          },
          body: new URLSearchParams({ grant_type: 'password', username: served.user.username, password: served.user.password }),
        });
        expect(login.status).toBe(200);
        const tokens = (await login.json()) as { access_token: string; refresh_token: string };
        noteSecret('access token (tracing)', tokens.access_token);
        noteSecret('refresh token (tracing)', tokens.refresh_token);
        // A careless client's query string, and a refresh: more secrets the trace must not hold.
        const careless = await fetch(`${serving.base}/token?password=${encodeURIComponent(served.user.password)}`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: served.client.basic },
          body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }),
        });
        expect(careless.status).toBe(400);
        const refresh = await fetch(`${serving.base}/refresh`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: served.client.basic },
          body: new URLSearchParams({ refresh_token: tokens.refresh_token }),
        });
        expect(refresh.status).toBe(200);
        const refreshed = (await refresh.json()) as { access_token: string; refresh_token: string };

        const inTrace = () => receiver.spans.filter((span) => span.traceId === traceId);
        await waitFor('the password grant trace', () => {
          const spans = inTrace();
          return spans.some((span) => span.name === 'POST /token') && spans.some(isPostgres) && spans.some(isRedis) && spans.some((span) => span.name === 'argon2 verify');
        });
        await waitFor('the refresh trace', () => receiver.spans.some((span) => span.name === 'POST /refresh'));

        const spans = inTrace();
        const http = spans.find((span) => span.name === 'POST /token')!;
        // The made-up caller's span is the parent: traceparent was honoured.
        expect(http).toMatchObject({ parentSpanId: callerSpanId, kind: 2 });
        expect(http.attributes).toMatchObject({ 'http.route': '/token', 'http.request.method': 'POST', 'http.response.status_code': 200 });
        const grant = spans.find((span) => span.name === 'grant password')!;
        expect(grant.parentSpanId).toBe(http.spanId);
        const argon2 = spans.find((span) => span.name === 'argon2 verify')!;
        expect(argon2.parentSpanId).toBe(grant.spanId);
        for (const span of [...spans.filter(isPostgres), ...spans.filter(isRedis)]) {
          expect(ancestors(span, spans).map((each) => each.spanId)).toContain(http.spanId);
        }
        // Queries made by the grant hang under it.
        expect(spans.filter(isPostgres).some((span) => span.parentSpanId === grant.spanId)).toBe(true);
        expect(receiver.contentTypes).toEqual(new Set([protocol === 'http/json' ? 'application/json' : 'application/x-protobuf']));
        expect(http.resource).toMatchObject({
          'service.name': 'tessera-under-test',
          'service.version': readPackageVersion(),
          'deployment.environment.name': 'test',
        });

        // The request's log line names the trace and the HTTP span.
        const requestId = login.headers.get('x-request-id');
        const exitCode = await stop(serving);
        expect(exitCode).toBe(0);
        const line = logLines(serving.server.stdout()).find((each) => each['request_id'] === requestId);
        expect(line).toMatchObject({ msg: 'request completed', trace_id: traceId, span_id: http.spanId });

        // Every value of every export request (names, attributes, events, resource) against every secret.
        const secrets = {
          password: served.user.password,
          'client secret': served.client.secret!,
          'Authorization header': served.client.basic,
          'Basic credentials': served.client.basic.slice('Basic '.length),
          'access token': tokens.access_token,
          'refresh token': tokens.refresh_token,
          'refreshed access token': refreshed.access_token,
          'refreshed refresh token': refreshed.refresh_token,
        };
        const values = receiver.requests.flatMap(everyString);
        const leaks = Object.entries(secrets).flatMap(([what, secret]) =>
          [secret, encodeURIComponent(secret)].flatMap((form) => values.filter((value) => value.includes(form)).map((value) => `${what} in ${value.slice(0, 200)}`)),
        );
        expect(leaks).toEqual([]);
        // The sweep saw the spans it was meant to (a sweep over nothing proves nothing).
        expect(values).toContain('POST /refresh');
      } finally {
        await receiver.close();
      }
    });
  }

  it('traces in every worker with WEB_CONCURRENCY=2', { timeout: 90_000 }, async () => {
    const receiver = await startOtlpReceiver();
    try {
      const serving = await serve({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '50', WEB_CONCURRENCY: '2' });
      const workers = () => new Set(receiver.spans.filter((span) => span.name === 'POST /token').map((span) => span.resource['process.pid']));
      // Each login on a connection of its own: the primary hands connections to the workers in turn.
      await waitFor('token spans from both workers', async () => {
        const res = await fetch(`${serving.base}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: served.client.basic, connection: 'close' },
          body: new URLSearchParams({ grant_type: 'password', username: served.user.username, password: served.user.password }),
        });
        expect(res.status).toBe(200);
        noteSecret('access token (tracing)', ((await res.json()) as { access_token: string }).access_token);
        return workers().size === 2;
      }, { timeoutMs: 30_000, intervalMs: 100 });
      expect(await stop(serving)).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it('serves and shuts down as usual when the receiver is down or never answers', { timeout: 90_000 }, async () => {
    const hanging = await startOtlpReceiver({ hang: true });
    try {
      const down = `http://127.0.0.1:${await freePort()}`;
      for (const endpoint of [down, hanging.endpoint]) {
        const serving = await serve({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '50' });
        for (let attempt = 0; attempt < 5; attempt++) {
          const res = await fetchPasswordGrant(serving.base, served.client, served.user);
          expect(res.status).toBe(200);
          noteSecret('access token (tracing)', ((await res.json()) as { access_token: string }).access_token);
        }
        // The normal shutdown path: exit 0, well within the test's own timeout.
        expect(await stop(serving)).toBe(0);
        expect(logLines(serving.server.stdout()).map((line) => line['msg'])).toContain('no longer accepting connections; finishing requests in flight');
      }
      // The exporter did send there, and got no answer.
      expect(hanging.received()).toBeGreaterThan(0);
    } finally {
      await hanging.close();
    }
  });

  it('does not load the OpenTelemetry SDK when no OTEL_ variable is set', { timeout: 90_000 }, async () => {
    // NODE_DEBUG=module names every module the CommonJS loader looks for, which is how the SDK's
    // packages load one another. The same run with an OTEL_ variable shows the probe sees them.
    const loaded = async (otel: NodeJS.ProcessEnv) => {
      const serving = await serve({ NODE_DEBUG: 'module', ...otel });
      await fetchPasswordGrant(serving.base, served.client, served.user).then((res) => res.text());
      expect(await stop(serving)).toBe(0);
      return new Set(serving.server.stderr().match(/@opentelemetry\/[a-z-]+/g) ?? []);
    };
    const off = await loaded({});
    expect([...off].filter((name) => name !== '@opentelemetry/api')).toEqual([]);
    const on = await loaded({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}` });
    expect(on).toContain('@opentelemetry/sdk-trace');
  });
});
