import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request, type RequestHandler, type Response, Router } from 'express';
import type { Deps } from '../deps.js';
import { grants } from '../grants/index.js';
import type { GrantLabel, Metrics, TokenOutcome } from '../metrics.js';
import type { OAuthErrorCode } from '../oauth/errors.js';
import { errorHandler, methodNotAllowed, notFound } from './errors.js';

/** The route label of a request no route answered (404s, CORS preflights): never its URL. */
const UNMATCHED = 'unmatched';

/** Times every request of the app it is mounted in, labelled by route pattern and status. */
export function httpMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    trackRoutePatterns(Object.getPrototypeOf(req) as object);
    const started = performance.now();
    res.once('finish', () => {
      const route = (req as unknown as Record<symbol, string | undefined>)[ROUTE_PATTERN] ?? UNMATCHED;
      metrics.httpRequestCompleted({ method: req.method, route, status: res.statusCode }, (performance.now() - started) / 1000);
    });
    next();
  };
}

const ROUTE = Symbol('route');
// A registered symbol: src/telemetry/tracing.ts names the HTTP span after it, without code on this path.
const ROUTE_PATTERN = Symbol.for('tessera.http.route-pattern');
const tracking = new WeakSet<object>();

/**
 * Records the pattern of the route that matched, with the path its router is mounted at ("/admin" +
 * "/users/:id"), when the router sets `req.route`, not when the response ends: an error leaving a
 * mounted router restores `req.baseUrl` before the error handler answers. The accessor is defined
 * once, on the app's request prototype (Express's `app.request`): defined on each request object,
 * it turned that object into a slow dictionary one and cost a tenth of a cheap request's CPU.
 */
function trackRoutePatterns(prototype: object): void {
  if (tracking.has(prototype)) return;
  tracking.add(prototype);
  Object.defineProperty(prototype, 'route', {
    configurable: true,
    get(this: Record<symbol, unknown>) {
      return this[ROUTE];
    },
    set(this: Request & Record<symbol, unknown>, value: unknown) {
      this[ROUTE] = value;
      const path = (value as { path?: unknown } | undefined)?.path;
      // Lower-cased: routing is case-insensitive, so /ADMIN/roles must not become a label of its own.
      this[ROUTE_PATTERN] = typeof path === 'string' ? `${this.baseUrl}${path}`.toLowerCase() : undefined;
    },
  });
}

/**
 * Counts a token request by grant and outcome once its response is sent. The outcome comes from
 * the OAuth error code sendError (src/http/errors.ts) recorded, so every path that answers, from a
 * rate limiter to the grant itself, is counted here and nowhere else.
 */
export function countTokenRequests(metrics: Metrics, grantOf: (req: Request) => unknown): RequestHandler {
  return (req, res, next) => {
    res.once('finish', () => {
      const grant = grantOf(req);
      metrics.tokenRequest(typeof grant === 'string' && grants.has(grant) ? (grant as GrantLabel) : 'unknown', outcomeOf(res));
    });
    next();
  };
}

function outcomeOf(res: Response): TokenOutcome {
  const code = res.locals['oauthError'] as OAuthErrorCode | undefined;
  switch (code) {
    case undefined:
      return res.statusCode < 400 ? 'success' : 'error';
    case 'temporarily_unavailable':
      return res.statusCode === 429 ? 'rate_limited' : 'unavailable';
    case 'invalid_request':
    case 'invalid_client':
    case 'invalid_grant':
    case 'invalid_scope':
    case 'unauthorized_client':
    case 'unsupported_grant_type':
      return code;
    default:
      return 'error';
  }
}

/** GET /metrics: the Prometheus text exposition of this process's registry. */
export function metricsRouter(metrics: Metrics): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const { contentType, text } = await metrics.exposition();
    res.type(contentType).send(text);
  });
  router.all('/metrics', methodNotAllowed('GET', 'HEAD'));
  return router;
}

/** What METRICS_PORT serves: /metrics and nothing else, so that port can stay inside the cluster. */
export function createMetricsApp(deps: Pick<Deps, 'metrics' | 'log'>): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(metricsRouter(deps.metrics));
  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}

export interface MetricsListener {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

/** With METRICS_PORT set, /metrics on HOST:METRICS_PORT; otherwise nothing (it is on the main port). */
export async function listenForMetrics(deps: Pick<Deps, 'metrics' | 'log' | 'config'>): Promise<MetricsListener | undefined> {
  if (deps.config.metricsPort === undefined) return undefined;
  const server = createServer(createMetricsApp(deps));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.config.metricsPort, deps.config.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    // A scrape is short and the replica is going away: nothing here is worth waiting for.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
