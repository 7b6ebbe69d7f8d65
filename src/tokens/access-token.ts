import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { epochSeconds } from '../clock.js';
import type { Deps } from '../deps.js';
import { SIGNING_ALGORITHM } from '../keys/key-store.js';
import { OAuthError } from '../oauth/errors.js';
import { signJwt } from './jws.js';
import { JwtVerificationError, verifyJwt } from './verify-jws.js';

/** RFC 9068 §2.1: the media type of a JWT access token. */
export const ACCESS_TOKEN_TYPE = 'at+jwt';
/** Bigger than any token Tessera signs; anything larger is refused before it is parsed. */
const MAX_TOKEN_LENGTH = 8192;
/** Replicas' clocks may differ a little. */
const CLOCK_TOLERANCE_SECONDS = 5;

export interface AccessTokenSubject {
  /** The user's stable id, or the client id for client_credentials. */
  readonly sub: string;
  readonly clientId: string;
  readonly scope: readonly string[];
  readonly audience: readonly string[];
  /** When the user last authenticated (seconds). */
  readonly authTime?: number;
  /** The session (a refresh family, with or without refresh tokens): every user token has one, client tokens none. */
  readonly sid?: string;
  /** Claims about the user the client asked for (src/auth/token-claims.ts); never one of those set here. */
  readonly userClaims?: Readonly<Record<string, unknown>>;
}

export interface IssuedAccessToken {
  readonly token: string;
  readonly expiresIn: number;
}

export interface AccessTokenClaims extends JWTPayload {
  sub: string;
  client_id: string;
  scope: string;
  jti: string;
  iat: number;
  exp: number;
  auth_time?: number;
  sid?: string;
}

/** RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, plus scope and auth_time. */
export async function signAccessToken(
  deps: Pick<Deps, 'config' | 'clock' | 'keys'>,
  subject: AccessTokenSubject,
): Promise<IssuedAccessToken> {
  const { kid, privateKey } = deps.keys.current().signing;
  const now = epochSeconds(deps.clock);
  const ttl = deps.config.accessTokenTtl;
  // The client's own audiences, and always Tessera's AUDIENCE, so that the user can also use the
  // token at Tessera's own endpoints (/userinfo, password change). RFC 9068 §2.2 allows a list.
  const audience = [...new Set([...subject.audience, deps.config.audience])];
  // auth_time and sid only when there are some: a member whose value is undefined is left out of the JSON.
  // The user claims first, so that even a reserved name that got past checkTokenClaims is overwritten.
  const claims = {
    ...subject.userClaims,
    iss: deps.config.issuer,
    sub: subject.sub,
    aud: audience.length === 1 ? audience[0]! : audience,
    jti: randomUUID(),
    iat: now,
    exp: now + ttl,
    client_id: subject.clientId,
    scope: subject.scope.join(' '),
    auth_time: subject.authTime,
    sid: subject.sid,
  };
  const token = await signJwt({ alg: SIGNING_ALGORITHM, typ: ACCESS_TOKEN_TYPE, kid }, claims, privateKey);
  return { token, expiresIn: ttl };
}

/**
 * Strict verification of Tessera's own access tokens (RFC 8725, RFC 9068 §4): RS256 only, `typ`
 * must be at+jwt, keys only from Tessera's own key set by `kid` (the `jku`, `x5u` and `jwk` headers
 * are never consulted), and `iss`, `aud` and `exp` checked. Any failure is invalid_token.
 * Synchronous node:crypto (src/tokens/verify-jws.ts), not jose's WebCrypto: it runs on every
 * bearer request and introspection, and the WebCrypto overhead cost more than the RSA verify.
 */
export async function verifyAccessToken(
  deps: Pick<Deps, 'config' | 'clock' | 'keys'>,
  token: string,
  audience: string = deps.config.audience,
): Promise<AccessTokenClaims> {
  if (token.length > MAX_TOKEN_LENGTH) throw invalidToken('the access token is too long');
  const { publicKeys } = deps.keys.current();
  let payload: Record<string, unknown>;
  try {
    payload = verifyJwt(token, {
      keys: publicKeys,
      typ: ACCESS_TOKEN_TYPE,
      issuer: deps.config.issuer,
      audience,
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      // Also refuses an `iat` in the future (RFC 8725 §3.10 spirit), and one older than any token Tessera signs now.
      maxTokenAge: deps.config.accessTokenTtl,
      now: epochSeconds(deps.clock),
    });
  } catch (error) {
    if (error instanceof JwtVerificationError && error.failure === 'expired') throw invalidToken('the access token has expired');
    throw invalidToken('the access token is not valid');
  }
  if (typeof payload['client_id'] !== 'string' || typeof payload['scope'] !== 'string') {
    throw invalidToken('the access token is malformed');
  }
  return payload as AccessTokenClaims;
}

function invalidToken(description: string): OAuthError {
  return new OAuthError('invalid_token', description, {
    headers: { 'WWW-Authenticate': `Bearer realm="tessera", error="invalid_token", error_description="${description}"` },
  });
}
