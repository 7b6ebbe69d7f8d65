import { formatScope, OPENID_SCOPE, parseScope, resolveScope } from '../auth/scopes.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { rotateRefreshToken } from '../refresh/rotation.js';
import { isWellFormedRefreshToken } from '../refresh/tokens.js';
import { signAccessToken } from '../tokens/access-token.js';
import { readUserClaims } from '../tokens/user-claims.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

/**
 * RFC 6749 §6: refreshing an access token. The presented token is consumed and a successor
 * returned (src/refresh/rotation.ts). `scope` may narrow the new access token, never widen it; the
 * family keeps what was granted at login, less anything the user or client has lost since.
 */
export const refreshTokenGrant: Grant = {
  grantType: 'refresh_token',
  async handle(request: TokenRequest, deps: Deps): Promise<TokenResponse> {
    const token = request.params['refresh_token'];
    if (token === undefined || token === '') throw invalidRequest('refresh_token is required');
    const requested = parseScope(request.params['scope']);
    if (!isWellFormedRefreshToken(token)) {
      throw new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked');
    }

    const rotation = await rotateRefreshToken(deps, {
      token,
      client: request.client,
      ip: request.ip,
      requestId: request.requestId,
      scopeCannotFail: requested === undefined,
      decideScope: (family) => {
        const userScopes = new Set(family.user_scopes);
        return resolveScope({
          requested,
          clientDefault: family.scope,
          clientAllowed: request.client.allowed_scopes,
          // `openid` is every user's (src/auth/scopes.ts): a session that has it keeps it.
          subjectAllowed: family.scope.filter((scope) => userScopes.has(scope) || scope === OPENID_SCOPE),
        });
      },
    });
    // The user's roles and attributes as they are now (not as at login), for a client that maps them.
    const userClaims = await readUserClaims(deps, request.client, rotation.family.user_id);
    const accessToken = await signAccessToken(deps, {
      sub: rotation.family.user_id,
      clientId: request.client.id,
      scope: rotation.scope,
      audience: request.client.audience,
      authTime: Math.floor(rotation.family.auth_time.getTime() / 1000),
      sid: rotation.family.id,
      ...(userClaims === undefined ? {} : { userClaims }),
    });
    return {
      access_token: accessToken.token,
      token_type: 'Bearer',
      expires_in: accessToken.expiresIn,
      scope: formatScope(rotation.scope),
      refresh_token: rotation.token,
    };
  },
};
