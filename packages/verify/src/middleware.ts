/**
 * The RFC 6750 answers, and middleware that gives them. Written against node:http's request and
 * response, which Express's extend, so it serves Express, Connect and a plain node:http server alike
 * and needs none of them installed.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { InsufficientScopeError, InvalidTokenError, IssuerUnavailableError, VerificationError } from './errors.js';
import type { TesseraAuth } from './verifier.js';

/** What verifyRequest reads of a request: its headers (node:http, Express, Fastify, Koa's `ctx.req`). */
export interface RequestLike {
  readonly headers: IncomingHttpHeaders;
}

export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

export interface ErrorResponse {
  readonly status: 401 | 403 | 503;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { readonly error: VerificationError['code']; readonly error_description: string };
}

declare global {
  // Express's Request, augmented (a namespace of its own when @types/express is absent).
  namespace Express {
    interface Request {
      auth?: TesseraAuth;
    }
  }
}

/** RFC 6750 §3: the challenge names the error (bare when there were no credentials); a 503 names none. */
export function describeError(error: VerificationError, realm: string): ErrorResponse {
  const headers: Record<string, string> = { 'Cache-Control': 'no-store' };
  if (error instanceof IssuerUnavailableError) {
    headers['Retry-After'] = String(error.retryAfterSeconds);
  } else {
    const challenge = [`Bearer realm="${realm}"`];
    if (!(error instanceof InvalidTokenError && error.missing)) challenge.push(`error="${error.code}"`, `error_description="${error.description}"`);
    if (error instanceof InsufficientScopeError) challenge.push(`scope="${error.scopes.join(' ')}"`);
    headers['WWW-Authenticate'] = challenge.join(', ');
  }
  return { status: error.status, headers, body: { error: error.code, error_description: error.description } };
}

export function createMiddleware(
  verifyRequest: (req: IncomingMessage) => Promise<TesseraAuth>,
  errorResponse: (error: VerificationError) => ErrorResponse,
): { authenticate: Middleware; requireScopes(...scopes: string[]): Middleware } {
  // Only an `auth` this verifier made counts as authenticated: other middleware may set req.auth too.
  const ours = new WeakSet<object>();

  const guard = (scopes: readonly string[]): Middleware => (req, res, next) => {
    const request = req as IncomingMessage & { auth?: TesseraAuth };
    const known = request.auth && ours.has(request.auth) ? request.auth : undefined;
    (known ? Promise.resolve(known) : verifyRequest(req)).then(
      (auth) => {
        ours.add(auth);
        request.auth = auth;
        if (scopes.some((scope) => !auth.scopes.has(scope))) return send(res, errorResponse(new InsufficientScopeError(scopes)));
        next();
      },
      (error: unknown) => (error instanceof VerificationError ? send(res, errorResponse(error)) : next(error)),
    );
  };

  return { authenticate: guard([]), requireScopes: (...scopes) => guard(scopes) };
}

function send(res: ServerResponse, answer: ErrorResponse): void {
  res.statusCode = answer.status;
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(answer.body));
}
