import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * One line per request with a request id (taken from a sane X-Request-Id, else generated, and
 * echoed back). Only method, path (never the query string, where a careless client may put a
 * password), status and timing are logged: no headers, no bodies.
 */
export function requestLogger(log: Logger): RequestHandler {
  return pinoHttp({
    logger: log,
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const incoming = req.headers['x-request-id'];
      const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    serializers: {
      req: (req: { id: unknown; method: string; url: string; remoteAddress?: string }) => ({
        id: req.id,
        method: req.method,
        path: req.url.split('?')[0],
      }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    // A 503 is an outage already logged once as a warning by the error handler, not a bug.
    customLogLevel: (_req, res, error) => (res.statusCode === 503 ? 'warn' : error || res.statusCode >= 500 ? 'error' : 'info'),
    // The error handler logs causes; the access line needs only the outcome.
    customSuccessMessage: () => 'request completed',
    customErrorMessage: () => 'request failed',
  }) as unknown as RequestHandler;
}
