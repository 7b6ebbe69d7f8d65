import type { Request } from 'express';
import { findUserSession, type UserSession } from '../db/users.js';
import type { Deps } from '../deps.js';
import { isUuid } from '../ids.js';
import { OAuthError } from '../oauth/errors.js';
import { type AccessTokenClaims, verifyAccessToken } from '../tokens/access-token.js';

/** RFC 6750 §3: a request without credentials gets a bare challenge, no error code. */
function missingToken(): OAuthError {
  return new OAuthError('invalid_token', 'a bearer access token is required', {
    headers: { 'WWW-Authenticate': 'Bearer realm="tessera"' },
  });
}

/** RFC 6750 §2.1: the token comes in the Authorization header only (never the URL, §2.3). */
export async function authenticateBearer(deps: Deps, req: Request): Promise<AccessTokenClaims> {
  const header = req.get('authorization');
  if (header === undefined) throw missingToken();
  // The HTTP parser has already dropped the white space around the field value (RFC 9110 §5.5).
  const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(header);
  if (!match) throw invalidToken('the Authorization header is not a bearer token');
  return verifyAccessToken(deps, match[1]!);
}

/**
 * A client_credentials token (RFC 9068 §2.2: `sub` is the client itself) names no user. Users have
 * uuid ids and a client id may not look like one (src/oauth/client-auth.ts: no such client can
 * authenticate, so none gets a token), so the two never meet: the shape of `sub` says which it is.
 */
export function isClientToken(claims: Pick<AccessTokenClaims, 'sub'>): boolean {
  return !isUuid(claims.sub);
}

function invalidToken(description: string): OAuthError {
  return new OAuthError('invalid_token', description, {
    headers: { 'WWW-Authenticate': 'Bearer realm="tessera", error="invalid_token"' },
  });
}

function revokedToken(): OAuthError {
  return invalidToken('the access token is not valid');
}

/**
 * For Tessera's own user endpoints: a valid access token whose user still exists and is enabled,
 * and whose session (`sid`) has not ended. Downstream services verifying offline cannot know the
 * last two before the token expires; Tessera can, so a logout takes effect here at once.
 */
export async function authenticateUser(deps: Deps, req: Request): Promise<{ claims: AccessTokenClaims; user: UserSession }> {
  return authenticateUserWith(deps, req, findUserSession);
}

/** authenticateUser, reading with the session check what `find` reads (findUserProfile: roles and scopes too), in one query. */
export async function authenticateUserWith<U extends UserSession>(
  deps: Deps,
  req: Request,
  find: (db: Deps['db'], userId: string, sid: string | undefined) => Promise<U | undefined>,
): Promise<{ claims: AccessTokenClaims; user: U }> {
  const claims = await authenticateBearer(deps, req);
  const user = isClientToken(claims) ? undefined : await find(deps.db, claims.sub, claims.sid);
  if (user === undefined || user.disabled || !user.session_live) throw revokedToken();
  return { claims, user };
}
