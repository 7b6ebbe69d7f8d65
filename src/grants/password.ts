import { formatScope, parseScope, resolveScope } from '../auth/scopes.js';
import { authenticateUser, readCredentials, SIGN_IN_FAILED } from '../auth/user-login.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { startSession } from '../refresh/rotation.js';
import { signAccessToken } from '../tokens/access-token.js';
import { readUserClaims } from '../tokens/user-claims.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

/**
 * RFC 6749 §4.3, the resource owner password credentials grant. RFC 9700 §2.4 discourages it;
 * Tessera offers it to first-party clients an operator explicitly allows (DESIGN.md).
 */
export const passwordGrant: Grant = {
  grantType: 'password',
  async handle(request: TokenRequest, deps: Deps): Promise<TokenResponse> {
    const { username, password } = readCredentials(request.params);
    const requestedScope = parseScope(request.params['scope']);
    const user = await authenticateUser(deps, username, password, { ip: request.ip, clientId: request.client.id, requestId: request.requestId });

    const userClaims = await readUserClaims(deps, request.client, user.id);
    const scope = resolveScope({
      requested: requestedScope,
      clientDefault: request.client.default_scopes,
      clientAllowed: request.client.allowed_scopes,
      subjectAllowed: user.scopes,
    });
    const authTime = new Date(deps.clock.now());
    // Every login starts a session (its `sid`); a client allowed the refresh grant also gets the
    // session's first refresh token (src/refresh/rotation.ts, startSession).
    const session = await startSession(deps, {
      userId: user.id,
      passwordChangedAt: user.password_changed_at,
      clientId: request.client.id,
      scope,
      authTime,
      refreshable: request.client.grant_types.includes('refresh_token'),
    });
    // The password changed (or the user was disabled) while we verified it: the login is void.
    if (session === undefined) throw new OAuthError('invalid_grant', SIGN_IN_FAILED);
    const accessToken = await signAccessToken(deps, {
      sub: user.id,
      clientId: request.client.id,
      scope,
      audience: request.client.audience,
      authTime: Math.floor(authTime.getTime() / 1000),
      sid: session.familyId,
      ...(userClaims === undefined ? {} : { userClaims }),
    });
    deps.audit.record(
      'login_succeeded',
      { user_id: user.id, client_id: request.client.id, ip: request.ip, family_id: session.familyId },
      { actor: { type: 'user', id: user.id }, requestId: request.requestId },
    );
    return {
      access_token: accessToken.token,
      token_type: 'Bearer',
      expires_in: accessToken.expiresIn,
      scope: formatScope(scope),
      ...(session.token === undefined ? {} : { refresh_token: session.token }),
    };
  },
};

