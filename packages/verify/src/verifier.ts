/**
 * `@tessera-auth/verify`: checks Tessera's access tokens (RFC 9068) in the services that accept
 * them, offline against Tessera's JWKS (discovered from the issuer, cached, refreshed when an
 * unknown `kid` appears, so key rotations need nothing from the service).
 *
 *   const tessera = createVerifier({ issuer: 'https://auth.example.com', audience: 'orders-api' });
 *   app.post('/orders', tessera.requireScopes('orders:write'), (req, res) => { req.auth.sub ... });
 *   const auth = await tessera.verifyAccessToken(token); // any other server
 *
 * Self-contained on purpose (jose only, and node:http's types): it runs in other services' processes.
 */
import { errors, type JWTPayload, jwtVerify } from 'jose';
import { InsufficientScopeError, InvalidTokenError, VerificationError } from './errors.js';
import { createKeySet } from './key-set.js';
import { createMiddleware, describeError, type ErrorResponse, type Middleware, type RequestLike } from './middleware.js';

export interface VerifierOptions {
  /** Tessera's ISSUER, exactly. */
  readonly issuer: string;
  /** The `aud` value(s) this service accepts; a token must name at least one. */
  readonly audience: string | readonly string[];
  /** Skip discovery and use this JWKS URL. */
  readonly jwksUri?: string;
  /** Seconds of clock difference tolerated for `exp`, `iat` and `nbf` (default 5, at most 300). */
  readonly clockTolerance?: number;
  /** Shown in WWW-Authenticate (default: the audience). */
  readonly realm?: string;
  /** Milliseconds before a discovery or JWKS request is given up (default 5000). */
  readonly timeout?: number;
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

export interface VerifyOptions {
  /** Every one of these must be in the token's `scope`, or InsufficientScopeError. */
  readonly scopes?: readonly string[];
}

export interface Verifier {
  /**
   * The checks, for a raw token, in any server. Resolves to its claims; rejects with
   * InvalidTokenError, InsufficientScopeError or IssuerUnavailableError, and with nothing else.
   */
  verifyAccessToken(token: unknown, options?: VerifyOptions): Promise<TesseraAuth>;
  /** verifyAccessToken for the bearer token in a request's Authorization header (RFC 6750 §2.1). */
  verifyRequest(req: RequestLike, options?: VerifyOptions): Promise<TesseraAuth>;
  /** Middleware (Express, Connect, node:http): 401 unless the request carries a valid token; sets `req.auth`. */
  readonly authenticate: Middleware;
  /** authenticate, then 403 insufficient_scope unless the token has every one of `scopes`. */
  requireScopes(...scopes: string[]): Middleware;
  /** The RFC 6750 answer to an error: status, headers and JSON body, for servers other than Express. */
  errorResponse(error: VerificationError): ErrorResponse;
}

/** RFC 6750 §2.1's b64token. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;
/** Far beyond any token Tessera issues; a longer one is not parsed at all. */
const MAX_TOKEN_LENGTH = 8192;
const NOT_VALID = 'the access token is not valid';

export function createVerifier(options: VerifierOptions): Verifier {
  const audience = typeof options.audience === 'string' ? options.audience : [...options.audience];
  if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError('issuer must be the issuer URL');
  if (audience.length === 0) throw new TypeError('audience must name at least one audience');
  const clockTolerance = options.clockTolerance ?? 5;
  if (!(clockTolerance >= 0 && clockTolerance <= 300)) throw new TypeError('clockTolerance must be between 0 and 300 seconds');
  const realm = options.realm ?? (typeof audience === 'string' ? audience : audience.join(' '));
  const keys = createKeySet({ issuer: options.issuer, jwksUri: options.jwksUri, timeoutMs: options.timeout ?? 5_000 });

  async function verifyAccessToken(token: unknown, verifyOptions: VerifyOptions = {}): Promise<TesseraAuth> {
    if (token === undefined || token === null || token === '') throw new InvalidTokenError('a bearer access token is required', true);
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenError(NOT_VALID);
    const auth = await checkToken(token);
    const missing = (verifyOptions.scopes ?? []).filter((scope) => !auth.scopes.has(scope));
    if (missing.length > 0) throw new InsufficientScopeError(verifyOptions.scopes!);
    return auth;
  }

  async function checkToken(token: string): Promise<TesseraAuth> {
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        audience,
        algorithms: ['RS256'],
        typ: 'at+jwt',
        requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
        clockTolerance,
      });
      if (typeof payload['client_id'] !== 'string' || typeof payload['scope'] !== 'string') throw new InvalidTokenError(NOT_VALID);
      // jose checks `iat` only against a maximum age, which a verifier cannot know: a token
      // claiming to be issued in the future is refused here (RFC 8725 §3.10's spirit).
      if (typeof payload.iat !== 'number' || payload.iat > Date.now() / 1000 + clockTolerance) throw new InvalidTokenError(NOT_VALID);
      const claims = payload as JWTPayload & { client_id: string; scope: string; sub: string };
      return { ...claims, scopes: new Set(claims.scope.split(' ').filter(Boolean)) };
    } catch (error) {
      // IssuerUnavailableError comes from the key set: not the token's fault, never a reason to discard it.
      if (error instanceof VerificationError) throw error;
      if (error instanceof errors.JWTExpired) throw new InvalidTokenError('the access token has expired');
      throw new InvalidTokenError(NOT_VALID);
    }
  }

  async function verifyRequest(req: RequestLike, verifyOptions?: VerifyOptions): Promise<TesseraAuth> {
    const header = req.headers.authorization;
    // RFC 6750 §3.1: a request with no credentials gets the challenge without an error code.
    if (header === undefined) throw new InvalidTokenError('a bearer access token is required', true);
    const match = BEARER.exec(header.trim());
    if (!match) throw new InvalidTokenError('the Authorization header is not a bearer token');
    return verifyAccessToken(match[1], verifyOptions);
  }

  const errorResponse = (error: VerificationError) => describeError(error, realm);
  const { authenticate, requireScopes } = createMiddleware(verifyRequest, errorResponse);
  return { verifyAccessToken, verifyRequest, authenticate, requireScopes, errorResponse };
}
