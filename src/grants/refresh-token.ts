import { formatScope, OPENID_SCOPE, parseScope, resolveScope } from '../auth/scopes.js';
import type { RefreshFamily } from '../db/schema.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { rotateRefreshToken } from '../refresh/rotation.js';
import { isWellFormedRefreshToken } from '../refresh/tokens.js';
import { signAccessToken } from '../tokens/access-token.js';
import { signIdToken } from '../tokens/id-token.js';
import { readUserClaims } from '../tokens/user-claims.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

/**
 * RFC 6749 §6: refreshing an access token. The presented token is consumed and a successor
 * returned (src/refresh/rotation.ts). `scope` may narrow the new access token, never widen it; the
 * family keeps what was granted at login, less anything the user or client has lost since.
 * A session a code exchange started gets a new ID token while the access token keeps `openid`
 * (OIDC Core §12.2).
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
    const idToken = await signRefreshedIdToken(deps, request.client.id, rotation.family, rotation.scope, accessToken.token);
    return {
      access_token: accessToken.token,
      token_type: 'Bearer',
      expires_in: accessToken.expiresIn,
      scope: formatScope(rotation.scope),
      refresh_token: rotation.token,
      ...(idToken === undefined ? {} : { id_token: idToken }),
    };
  },
};

/**
 * OIDC Core §12.2: a refresh response "might not contain an id_token"; one that does has the
 * original's `iss`, `sub` and `aud`, a new `iat`, the `auth_time` "of the original authentication -
 * not the time that the new ID token is issued", and it "SHOULD NOT have a nonce Claim, even when
 * the ID Token issued at the time of the original authentication contained nonce". Tessera's ID
 * tokens carry no `azp`, so this one has none either. `at_hash` is that of the new access token.
 *
 * Only a session the authorization code grant started has a browser session, and only those got an
 * ID token at login: the password grant issues none (src/grants/password.ts), so its sessions get
 * none here either, whatever their scope. Nor does a refresh whose `scope` leaves `openid` out.
 * `sid` is the browser session the family belongs to now: the one the code came from, or the one
 * a later sign-in in the same browser handed it to (handOverBrowserSession), which is the session
 * a logout with this token as `id_token_hint` ends, and the family with it.
 */
async function signRefreshedIdToken(
  deps: Deps,
  clientId: string,
  family: RefreshFamily,
  scope: readonly string[],
  accessToken: string,
): Promise<string | undefined> {
  if (family.browser_session_id === null || !scope.includes(OPENID_SCOPE)) return undefined;
  return signIdToken(deps, {
    sub: family.user_id,
    clientId,
    authTime: family.auth_time,
    sid: family.browser_session_id,
    nonce: undefined,
    accessToken,
  });
}
