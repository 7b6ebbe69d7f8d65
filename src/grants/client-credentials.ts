import { formatScope, parseScope, resolveScope } from '../auth/scopes.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { signAccessToken } from '../tokens/access-token.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

/**
 * RFC 6749 §4.4: a service acting for itself. Confidential clients only (a public client cannot
 * prove who it is); the token's `sub` is the client id; scopes come from the client's own allowed
 * set; no refresh token (§4.4.3: the client can always ask again).
 */
export const clientCredentialsGrant: Grant = {
  grantType: 'client_credentials',
  async handle(request: TokenRequest, deps: Deps): Promise<TokenResponse> {
    const { client } = request;
    if (client.type !== 'confidential') {
      throw new OAuthError('unauthorized_client', 'only confidential clients may use client_credentials');
    }
    const scope = resolveScope({
      requested: parseScope(request.params['scope']),
      clientDefault: client.default_scopes,
      clientAllowed: client.allowed_scopes,
      subjectAllowed: client.allowed_scopes,
    });
    const accessToken = await signAccessToken(deps, { sub: client.id, clientId: client.id, scope, audience: client.audience });
    deps.audit.record('client_token_issued', { client_id: client.id, ip: request.ip, scope }, { actor: { type: 'client', id: client.id }, requestId: request.requestId });
    return { access_token: accessToken.token, token_type: 'Bearer', expires_in: accessToken.expiresIn, scope: formatScope(scope) };
  },
};
