import { randomUUID } from 'node:crypto';
import type { AuditContext } from '../audit/entry.js';
import { auditedChange } from '../audit/writer.js';
import { formatScope, OPENID_SCOPE } from '../auth/scopes.js';
import { consumeAuthorizationCode, findAuthorizationCode } from '../db/authorization-codes.js';
import { findBrowserSessionById } from '../db/browser-sessions.js';
import { revokeFamily } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { startSession } from '../refresh/rotation.js';
import { hashOpaqueSecret, isWellFormedOpaqueSecret, verifierMatchesChallenge } from '../signin/secrets.js';
import { signAccessToken } from '../tokens/access-token.js';
import { signIdToken } from '../tokens/id-token.js';
import { readUserClaims } from '../tokens/user-claims.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

function invalidCode(): OAuthError {
  return new OAuthError('invalid_grant', 'the authorization code is invalid, expired or already used');
}

/**
 * RFC 6749 §4.1.3, the authorization code grant, with PKCE (RFC 7636 §4.5, §4.6) for every client.
 * A confidential client authenticates as at any grant (src/oauth/client-auth.ts); a public one
 * names itself with client_id and proves the flow is its own with the verifier. The code works
 * once, within 60 s, for the client it was issued to, with the redirect URI it was issued for; a
 * second use fails and revokes the session the first one started (RFC 6749 §4.1.2, RFC 9700
 * §4.5.3.1). `openid` in the scope adds an ID token (OIDC Core §3.1.3.3).
 */
export const authorizationCodeGrant: Grant = {
  grantType: 'authorization_code',
  async handle(request: TokenRequest, deps: Deps): Promise<TokenResponse> {
    const { client, params, ip } = request;
    const code = params['code'];
    const verifier = params['code_verifier'];
    const redirectUri = params['redirect_uri'];
    if (code === undefined || code === '') throw invalidRequest('code is required');
    if (verifier === undefined || verifier === '') throw invalidRequest('code_verifier is required (PKCE)');
    if (!CODE_VERIFIER.test(verifier)) throw invalidRequest('code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)');
    const context = { client_id: client.id, ip };
    // The client presents the code: it is the actor of every exchange event.
    const auditContext: AuditContext = { actor: { type: 'client', id: client.id }, requestId: request.requestId };
    const refuse = (reason: string, fields: Record<string, unknown> = {}): never => {
      deps.audit.record('authorization_code_refused', { ...context, reason, ...fields }, auditContext);
      throw invalidCode();
    };
    if (!isWellFormedOpaqueSecret(code)) return refuse('unknown_code');

    const codeHash = hashOpaqueSecret(code);
    const issued = await findAuthorizationCode(deps.db, codeHash);
    if (issued === undefined) return refuse('unknown_code');
    const replayed = async (familyId: string | null): Promise<never> => {
      // The code leaked, or its first exchange was an attacker's: end what it started, with its audit row.
      await auditedChange(
        deps,
        auditContext,
        async (trx) => (familyId === null ? false : revokeFamily(trx, familyId, 'reuse', new Date(deps.clock.now()))),
        () => ({ event: 'authorization_code_reuse_detected', level: 'warn', fields: { ...context, user_id: issued.user_id, family_id: familyId } }),
      );
      throw invalidCode();
    };
    if (issued.used_at !== null) return replayed(issued.family_id);
    // Another client learns nothing and uses nothing up (RFC 6749 §4.1.3: issued to this client).
    if (issued.client_id !== client.id) return refuse('other_client', { user_id: issued.user_id });
    if (deps.clock.now() >= issued.expires_at.getTime()) return refuse('expired', { user_id: issued.user_id });
    // RFC 6749 §4.1.3: required if the authorization request named it, and then identical.
    if (redirectUri === undefined && issued.redirect_uri_given !== false) return refuse('redirect_uri_missing', { user_id: issued.user_id });
    if (redirectUri !== undefined && redirectUri !== issued.redirect_uri) return refuse('redirect_uri_mismatch', { user_id: issued.user_id });
    if (!verifierMatchesChallenge(verifier, issued.code_challenge)) return refuse('pkce_mismatch', { user_id: issued.user_id });
    // A logout between the code and its exchange ends the code too.
    const session = await findBrowserSessionById(deps.db, issued.browser_session_id);
    if (session === undefined || session.ended_at !== null) return refuse('session_ended', { user_id: issued.user_id });

    // The session first, then the code is marked used with it: whichever of two racing uses of
    // one code loses the compare-and-set ends its own session and the winner's, and a later use
    // always finds the session the first one started, already there to revoke.
    const familyId = randomUUID();
    const started = await startSession(deps, {
      userId: issued.user_id,
      passwordChangedAt: issued.password_changed_at,
      clientId: client.id,
      scope: issued.scope,
      authTime: issued.auth_time,
      refreshable: client.grant_types.includes('refresh_token'),
      familyId,
      browserSessionId: issued.browser_session_id,
    });
    // The password changed (or the user was disabled) since the sign-in.
    if (started === undefined) return refuse('user_changed', { user_id: issued.user_id });
    if (!(await consumeAuthorizationCode(deps.db, codeHash, familyId, new Date(deps.clock.now())))) {
      await revokeFamily(deps.db, familyId, 'reuse', new Date(deps.clock.now()));
      return replayed((await findAuthorizationCode(deps.db, codeHash))?.family_id ?? null);
    }

    const authTime = Math.floor(issued.auth_time.getTime() / 1000);
    // The claims the client maps from the user (roles, attributes), as at the password grant.
    const userClaims = await readUserClaims(deps, client, issued.user_id);
    const accessToken = await signAccessToken(deps, {
      sub: issued.user_id,
      clientId: client.id,
      scope: issued.scope,
      audience: client.audience,
      authTime,
      sid: familyId,
      ...(userClaims === undefined ? {} : { userClaims }),
    });
    const idToken = issued.scope.includes(OPENID_SCOPE)
      ? await signIdToken(deps, {
          sub: issued.user_id,
          clientId: client.id,
          authTime: issued.auth_time,
          sid: issued.browser_session_id,
          nonce: issued.nonce ?? undefined,
          accessToken: accessToken.token,
        })
      : undefined;
    deps.audit.record(
      'authorization_code_exchanged',
      { ...context, user_id: issued.user_id, family_id: familyId, session_id: issued.browser_session_id },
      auditContext,
    );
    return {
      access_token: accessToken.token,
      token_type: 'Bearer',
      expires_in: accessToken.expiresIn,
      scope: formatScope(issued.scope),
      ...(started.token === undefined ? {} : { refresh_token: started.token }),
      ...(idToken === undefined ? {} : { id_token: idToken }),
    };
  },
};
