import { Router } from 'express';
import type { Client } from '../db/schema.js';
import { findTokenFamily } from '../db/refresh-families.js';
import { findUserSession } from '../db/users.js';
import type { Deps } from '../deps.js';
import { invalidClient } from '../oauth/client-auth.js';
import { invalidRequest } from '../oauth/errors.js';
import { hashRefreshToken, isWellFormedRefreshToken } from '../refresh/tokens.js';
import { type AccessTokenClaims, verifyAccessToken } from '../tokens/access-token.js';
import { isClientToken } from './bearer.js';
import { authenticateRequestClient } from './client-authentication.js';
import { methodNotAllowed } from './errors.js';
import { noStore, parseForm, readParams, rejectQueryParameters, requireForm } from './form.js';

const INACTIVE = { active: false } as const;

/**
 * POST /introspect (RFC 7662). The caller authenticates as a client and learns about a token only
 * if the token was issued to it, or (access tokens) names it in `aud` by its client id: a resource
 * server registered as a client. Everything else, expired, revoked,
 * malformed, unknown or foreign, is `{"active": false}` and nothing more (§2.2).
 */
export function introspectRouter(deps: Deps): Router {
  const router = Router();
  router.post('/introspect', noStore, requireForm, parseForm, async (req, res) => {
    rejectQueryParameters(req);
    const params = readParams(req.body);
    const { client, method } = await authenticateRequestClient(deps, req, res, params);
    // RFC 7662 §2.1: the caller must be authorised; a public client's id proves nothing.
    if (method === 'none') throw invalidClient('introspection needs a confidential client');
    const token = params['token'];
    if (token === undefined || token === '') throw invalidRequest('token is required');
    const answer = isWellFormedRefreshToken(token)
      ? await introspectRefreshToken(deps, token, client)
      : await introspectAccessToken(deps, token, client);
    res.json(answer);
  });
  router.all('/introspect', methodNotAllowed('POST'));
  return router;
}

async function introspectAccessToken(deps: Deps, token: string, caller: Client): Promise<object> {
  const claims = await verifyAccessToken(deps, token).catch(() => undefined);
  // Verification tolerates a little clock skew; an answer must never say active past `exp`.
  if (claims === undefined || claims.exp * 1000 <= deps.clock.now() || !mayIntrospect(claims, caller)) return INACTIVE;
  const username = await stillValid(deps, claims);
  if (username === null) return INACTIVE;
  return {
    active: true,
    token_type: 'Bearer',
    token_use: 'access_token',
    scope: claims.scope,
    client_id: claims.client_id,
    ...(username === undefined ? {} : { username }),
    sub: claims.sub,
    aud: claims.aud,
    iss: claims.iss,
    jti: claims.jti,
    iat: claims.iat,
    exp: claims.exp,
    ...(claims.auth_time === undefined ? {} : { auth_time: claims.auth_time }),
    ...(claims.sid === undefined ? {} : { sid: claims.sid }),
  };
}

/**
 * The token's own client, or a resource server that the token names in `aud` by its client id (a
 * resource server registers as a confidential client whose id is its audience). A client's
 * `audience` setting says what to put in tokens issued to it, not what it may read: two gateways
 * sharing an audience must not read each other's tokens (RFC 7662 §4).
 */
function mayIntrospect(claims: AccessTokenClaims, caller: Client): boolean {
  if (claims.client_id === caller.id) return true;
  return (Array.isArray(claims.aud) ? claims.aud : [claims.aud]).includes(caller.id);
}

/**
 * Whether what the token stands for still holds: a user token's user exists and is enabled and
 * its session has not ended; a client token's client still exists. Returns the username for a
 * user token, undefined for a client token, null when the token no longer stands.
 */
async function stillValid(deps: Deps, claims: AccessTokenClaims): Promise<string | undefined | null> {
  if (isClientToken(claims)) return (await deps.clients.find(claims.sub)) ? undefined : null;
  const user = await findUserSession(deps.db, claims.sub, claims.sid);
  return user === undefined || user.disabled || !user.session_live ? null : user.username;
}

async function introspectRefreshToken(deps: Deps, token: string, caller: Client): Promise<object> {
  const state = await findTokenFamily(deps.db, hashRefreshToken(token));
  if (state === undefined || state.client_id !== caller.id) return INACTIVE;
  const now = deps.clock.now();
  const expires = Math.min(state.expires_at.getTime(), state.last_used_at.getTime() + deps.config.refreshTokenIdleTtl * 1000);
  // Only the current token of a live family is usable; a consumed one is not, even while a retry of it would still get its successor.
  if (state.revoked_at !== null || state.user_disabled || now >= expires || state.token_generation !== state.generation) return INACTIVE;
  return {
    active: true,
    // RFC 7662's token_type is an access-token type (RFC 6749 §5.1); a refresh token has none.
    token_use: 'refresh_token',
    scope: state.scope.join(' '),
    client_id: state.client_id,
    username: state.username,
    sub: state.user_id,
    iss: deps.config.issuer,
    iat: Math.floor(state.token_created_at.getTime() / 1000),
    exp: Math.floor(expires / 1000),
    sid: state.id,
  };
}
