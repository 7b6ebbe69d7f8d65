import type { RequestHandler } from 'express';

/** What a browser client may send: the token endpoints' forms and JSON, and a bearer token. */
const ALLOWED_METHODS = 'GET, HEAD, POST';
const ALLOWED_HEADERS = 'Authorization, Content-Type';
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/**
 * CORS for the origins in CORS_ORIGINS, and no others. An allowed origin is echoed (never `*`), no
 * credentials are allowed (Tessera uses no cookies: browser clients send tokens explicitly), and
 * `Vary: Origin` keeps caches from mixing answers. A preflight is answered here with 204; for an
 * origin not on the list it carries no CORS headers, so the browser refuses the real request.
 * With CORS_ORIGINS unset, Tessera sends no CORS headers at all.
 */
export function cors(origins: readonly string[]): RequestHandler {
  const allowed = new Set(origins);
  return (req, res, next) => {
    if (allowed.size === 0) return next();
    const origin = req.get('origin');
    res.vary('Origin');
    const permitted = origin !== undefined && allowed.has(origin);
    if (permitted) {
      res.set('Access-Control-Allow-Origin', origin);
      res.set('Access-Control-Expose-Headers', 'Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate, X-Request-Id');
    }
    if (req.method === 'OPTIONS' && req.get('access-control-request-method') !== undefined) {
      if (permitted) {
        res.set('Access-Control-Allow-Methods', ALLOWED_METHODS);
        res.set('Access-Control-Allow-Headers', ALLOWED_HEADERS);
        res.set('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE_SECONDS));
      }
      res.status(204).end();
      return;
    }
    next();
  };
}
