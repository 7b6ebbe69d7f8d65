import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { AuditActor, AuditContext } from '../audit/entry.js';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const HEALTH_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/**
 * One line per request with its `request_id` (taken from a sane X-Request-Id, else generated, and
 * echoed back). Only method, path (never the query string, where a careless client may put a
 * password), status and timing are logged: no headers, no bodies. Written when the response has
 * been sent, from the service's own logger: no per-request child logger, nothing else per request
 * (pino-http did both, and cost a tenth of a cheap request's CPU).
 */
export function requestLogger(log: Logger): RequestHandler {
  // Every field of the line is one that cannot hold a secret (a checked id, the method, the path
  // without its query, status, time), so the key-based redaction of src/logger.ts has nothing to
  // find in it, and it cost two thirds of the line (12 of 18 µs).
  const lines = log.child({}, { redact: [] });
  return (req, res, next) => {
    const started = performance.now();
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', id);
    const line = (status: number) => ({
      request_id: id,
      req: { method: req.method, path: (req.originalUrl ?? req.url).split('?')[0] },
      res: { status },
      response_time: Math.round(performance.now() - started),
    });
    res.once('close', () => {
      const status = res.statusCode;
      // Probes come every few seconds from every load balancer and kubelet: debug only (DESIGN.md,
      // Observability), and a 503 while draining or in an outage is already said by what caused it.
      if (HEALTH_PATHS.has(req.path)) return lines.debug(line(status), 'health probe');
      // A client that hangs up before its answer is not a server error.
      if (!res.writableFinished) return lines.info(line(status), 'request aborted');
      // A 503 is an outage already logged once as a warning by the error handler, not a bug.
      if (status === 503) lines.warn(line(status), 'request failed');
      else if (status >= 500) lines.error(line(status), 'request failed');
      else lines.info(line(status), 'request completed');
    });
    next();
  };
}

/** The X-Request-Id this request was given above. */
export function requestIdOf(res: Response): string | undefined {
  const id = res.getHeader('X-Request-Id');
  return typeof id === 'string' ? id : undefined;
}

/** Who made this request, from where, under which request id: what its audit rows carry. */
export function auditContextOf(req: Request, res: Response, actor: AuditActor): AuditContext {
  return { actor, ip: req.ip, requestId: requestIdOf(res) };
}
