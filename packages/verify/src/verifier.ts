/**
 * `tessera/verify`: Express middleware for downstream services that accept Tessera's access
 * tokens. It verifies them offline against Tessera's JWKS (discovered from the issuer, cached,
 * refreshed when an unknown `kid` appears, so key rotations need nothing from you), and answers
 * RFC 6750 errors.
 *
 *   const tessera = createVerifier({ issuer: 'https://auth.example.com', audience: 'orders-api' });
 *   app.post('/orders', tessera.requireScopes('orders:write'), (req, res) => { req.auth.sub ... });
 *
 * Self-contained on purpose (jose and Express only): it runs in other services' processes.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createLocalJWKSet, createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from 'jose';

export interface VerifierOptions {
  /** Tessera's ISSUER, exactly. */
  readonly issuer: string;
  /** The `aud` value(s) this service accepts; a token must name at least one. */
  readonly audience: string | readonly string[];
  /** Skip discovery and use this JWKS URL. */
  readonly jwksUri?: string;
  /** Seconds of clock difference tolerated for `exp`, `iat` and `nbf` (default 5). */
  readonly clockTolerance?: number;
  /** Shown in WWW-Authenticate (default: the audience). */
  readonly realm?: string;
}

/** The verified access token (RFC 9068 claims), on `req.auth`. */
export interface TesseraAuth extends JWTPayload {
  readonly sub: string;
  readonly client_id: string;
  readonly scope: string;
  /** `scope`, split. */
  readonly scopes: ReadonlySet<string>;
  readonly sid?: string;
  readonly auth_time?: number;
}

declare global {
  namespace Express {
    interface Request {
      auth?: TesseraAuth;
    }
  }
}

export interface Verifier {
  /** 401 unless the request carries a valid access token; sets `req.auth`. */
  readonly authenticate: RequestHandler;
  /** authenticate, then 403 insufficient_scope unless the token has every one of `scopes`. */
  requireScopes(...scopes: string[]): RequestHandler;
  /** The same checks for a raw token, outside Express. Throws on an invalid token. */
  verify(token: string): Promise<TesseraAuth>;
}

class VerificationError extends Error {
  constructor(
    readonly status: 401 | 403 | 503,
    readonly code: 'invalid_token' | 'insufficient_scope' | 'temporarily_unavailable',
    readonly description: string,
    readonly scope?: string,
  ) {
    super(description);
  }
}

export function createVerifier(options: VerifierOptions): Verifier {
  const audience = typeof options.audience === 'string' ? options.audience : [...options.audience];
  const realm = options.realm ?? (typeof options.audience === 'string' ? options.audience : options.audience.join(' '));
  let keySet: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  // Discovery (RFC 8414 §3) happens once; a failure is not cached, the next request tries again.
  const keys = () =>
    (keySet ??= discoverJwksUri(options).then((uri) => createRemoteJWKSet(new URL(uri), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000 })).catch(
      (error: unknown) => {
        keySet = undefined;
        throw error;
      },
    ));

  async function verify(token: string): Promise<TesseraAuth> {
    if (token.length > 8192) throw new VerificationError(401, 'invalid_token', 'the access token is not valid');
    let remote: ReturnType<typeof createRemoteJWKSet>;
    try {
      remote = await keys();
    } catch {
      throw new VerificationError(503, 'temporarily_unavailable', 'the token issuer cannot be reached');
    }
    // Stale-if-error: when a refresh of the key set fails (Tessera down, a 5xx, a timeout), the
    // keys last fetched still verify, so an outage of Tessera is not an outage of its verifiers.
    const jwks: Parameters<typeof jwtVerify>[1] = async (header, input) => {
      // Tessera names its key in every token; one without a `kid` is not Tessera's (as its own endpoints say).
      if (typeof header.kid !== 'string') throw new errors.JWKSNoMatchingKey();
      try {
        return await remote(header, input);
      } catch (error) {
        const cached = remote.jwks();
        if (isFetchFailure(error) && cached) return createLocalJWKSet(cached)(header, input);
        throw error;
      }
    };
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience,
        algorithms: ['RS256'],
        typ: 'at+jwt',
        requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
        clockTolerance: options.clockTolerance ?? 5,
      });
      if (typeof payload['client_id'] !== 'string' || typeof payload['scope'] !== 'string') {
        throw new VerificationError(401, 'invalid_token', 'the access token is not valid');
      }
      // jose checks `iat` only against a maximum age, which a verifier cannot know: a token
      // claiming to be issued in the future is refused here (RFC 8725 §3.10's spirit).
      if (typeof payload.iat !== 'number' || payload.iat > Date.now() / 1000 + (options.clockTolerance ?? 5)) {
        throw new VerificationError(401, 'invalid_token', 'the access token is not valid');
      }
      const claims = payload as JWTPayload & { client_id: string; scope: string; sub: string };
      return { ...claims, scopes: new Set(claims.scope.split(' ').filter(Boolean)) };
    } catch (error) {
      if (error instanceof VerificationError) throw error;
      // The key set could not be fetched: not the token's fault, and never a reason to discard it.
      if (isFetchFailure(error)) {
        throw new VerificationError(503, 'temporarily_unavailable', 'the token issuer cannot be reached');
      }
      if (error instanceof errors.JWTExpired) throw new VerificationError(401, 'invalid_token', 'the access token has expired');
      throw new VerificationError(401, 'invalid_token', 'the access token is not valid');
    }
  }

  const send = (res: Response, error: VerificationError) => {
    const challenge = [`Bearer realm="${realm}"`];
    if (error.code !== 'temporarily_unavailable') challenge.push(`error="${error.code}"`, `error_description="${error.description}"`);
    if (error.scope) challenge.push(`scope="${error.scope}"`);
    if (error.status !== 503) res.set('WWW-Authenticate', challenge.join(', '));
    else res.set('Retry-After', '5');
    res.set('Cache-Control', 'no-store');
    res.status(error.status).json({ error: error.code, error_description: error.description });
  };

  // Only an `auth` this verifier made counts as authenticated: other middleware may set req.auth too.
  const ours = new WeakSet<object>();
  const authenticate: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    if (req.auth && ours.has(req.auth)) return next();
    const header = req.get('authorization');
    // RFC 6750 §3.1: a request with no credentials gets the challenge without an error code.
    if (header === undefined) {
      res.set('WWW-Authenticate', `Bearer realm="${realm}"`).set('Cache-Control', 'no-store');
      res.status(401).json({ error: 'invalid_token', error_description: 'a bearer access token is required' });
      return;
    }
    const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(header.trim());
    if (!match) return send(res, new VerificationError(401, 'invalid_token', 'the Authorization header is not a bearer token'));
    verify(match[1]!).then(
      (auth) => {
        ours.add(auth);
        req.auth = auth;
        next();
      },
      (error: unknown) => (error instanceof VerificationError ? send(res, error) : next(error)),
    );
  };

  return {
    authenticate,
    verify,
    requireScopes(...scopes: string[]): RequestHandler {
      return (req, res, next) =>
        authenticate(req, res, (error?: unknown) => {
          if (error) return next(error);
          const missing = scopes.filter((scope) => !req.auth!.scopes.has(scope));
          if (missing.length > 0) {
            return send(res, new VerificationError(403, 'insufficient_scope', 'the access token lacks a required scope', scopes.join(' ')));
          }
          next();
        });
    },
  };
}

/**
 * A failure to fetch the key set, as opposed to a token that does not verify: a network error (not
 * a JOSE error at all), a timeout, a non-200 or non-JSON answer (jose's generic error), or a
 * malformed key set.
 */
function isFetchFailure(error: unknown): boolean {
  if (!(error instanceof errors.JOSEError)) return true;
  return error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || error.code === 'ERR_JOSE_GENERIC';
}

async function discoverJwksUri(options: VerifierOptions): Promise<string> {
  if (options.jwksUri) return options.jwksUri;
  const response = await fetch(`${options.issuer}/.well-known/oauth-authorization-server`, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`discovery answered ${response.status}`);
  const metadata = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
  // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
  if (metadata.issuer !== options.issuer || typeof metadata.jwks_uri !== 'string') throw new Error('discovery metadata does not match the issuer');
  return metadata.jwks_uri;
}
