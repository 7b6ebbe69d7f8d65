import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { OAuthError } from '../oauth/errors.js';

/** Seconds a client should wait before retrying after a 503. */
const RETRY_AFTER_SECONDS = 5;

/** RFC 6749 §5.1: token responses, and every error, must not be cached. */
export function setNoStore(res: Response): void {
  res.set('Cache-Control', 'no-store');
  res.set('Pragma', 'no-cache');
}

/** The one place that writes an error response. */
export function sendError(res: Response, error: OAuthError): void {
  res.locals['oauthError'] = error.code; // the token-request metric's outcome (src/http/metrics.ts)
  setNoStore(res);
  res.set(error.headers);
  res.status(error.status).json(error.toJSON());
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * An error from the infrastructure (database unreachable, timed out, overloaded or shutting down),
 * as opposed to a bug. These become 503 temporarily_unavailable, never invalid_grant: clients
 * throw tokens away on invalid_grant.
 */
export function isInfrastructureError(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (CONNECTION_ERROR_CODES.has(code)) return true;
      // SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention, statement timeout),
      // and 40001/40P01 (serialisation failure, deadlock: retryable).
      if (/^(08|53|57)/.test(code) || code === '40001' || code === '40P01') return true;
    }
    // pg's pool and client messages, and PGlite's once it is closing (embedded mode, at shutdown).
    if (/timeout|Connection terminated|connection error|not queryable|Client was closed|PGlite is clos/i.test(current.message)) {
      return true;
    }
  }
  return false;
}

function isDataException(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('22');
}

/** body-parser's error types, as RFC 6749 errors. */
function fromBodyParser(error: { type?: unknown; status?: unknown }): OAuthError | undefined {
  switch (error.type) {
    case 'entity.too.large':
      return new OAuthError('invalid_request', 'the request body is too large', { status: 413 });
    case 'parameters.too.many':
      return new OAuthError('invalid_request', 'the request has too many parameters', { status: 413 });
    case 'encoding.unsupported':
      return new OAuthError('invalid_request', 'the request body encoding is not supported', { status: 415 });
    // Any charset but UTF-8 (src/http/form.ts): 415, as for every body Tessera cannot take as sent.
    case 'charset.unsupported':
      return new OAuthError('invalid_request', 'the request body must be encoded in UTF-8', { status: 415 });
    case 'json.duplicate.key':
      return new OAuthError('invalid_request', 'a parameter is repeated');
    case 'json.not.object':
      return new OAuthError('invalid_request', 'the request body must be a JSON object');
    case 'entity.parse.failed':
    case 'entity.verify.failed':
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new OAuthError('invalid_request', 'the request body could not be read');
    default:
      return typeof error.status === 'number' && error.status >= 400 && error.status < 500
        ? new OAuthError('invalid_request', 'the request could not be read', { status: error.status })
        : undefined;
  }
}

/** Turns anything thrown into an RFC-style response; causes go to the log, never to the client. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => {
    if (res.headersSent) return;
    sendError(res, toOAuthError(log, error, res));
  };
}

/** What to tell the client about anything thrown (an OAuthError as it is); the cause is logged here. */
export function toOAuthError(log: Logger, error: unknown, res: Response): OAuthError {
  // The same request_id as the request's own line (src/http/request-log.ts), so the two meet.
  const request_id = res.getHeader('X-Request-Id');
  if (error instanceof OAuthError) return error;
  const parsed = typeof error === 'object' && error !== null ? fromBodyParser(error) : undefined;
  if (parsed) return parsed;
  // SQLSTATE class 22 (data exception: a NUL byte, an invalid uuid) is bad input that slipped past
  // validation: still the client's error, never a 500.
  if (isDataException(error)) {
    log.warn({ err: error, request_id }, 'input the database refused');
    return new OAuthError('invalid_request', 'the request contains a value that is not allowed');
  }
  if (isInfrastructureError(error)) {
    log.warn({ err: error, request_id }, 'infrastructure failure: answering 503');
    return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; retry later', {
      headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
    });
  }
  log.error({ err: error, request_id }, 'unexpected error');
  return new OAuthError('server_error', 'the server could not complete the request');
}

export const notFound: RequestHandler = (_req, res) =>
  sendError(res, new OAuthError('invalid_request', 'there is no such endpoint', { status: 404 }));

/** 405 with the methods the path does take (RFC 9110 §15.5.6). */
export function methodNotAllowed(...allowed: string[]): RequestHandler {
  return (_req, res) =>
    sendError(
      res,
      new OAuthError('invalid_request', `this endpoint accepts ${allowed.join(', ')} only`, {
        status: 405,
        headers: { Allow: allowed.join(', ') },
      }),
    );
}
