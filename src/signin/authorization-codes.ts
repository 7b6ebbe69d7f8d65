import { auditedChange } from '../audit/writer.js';
import { OPENID_SCOPE, resolveScope } from '../auth/scopes.js';
import { insertAuthorizationCode } from '../db/authorization-codes.js';
import type { BrowserSession } from '../db/schema.js';
import { findUserScopes } from '../db/users.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { AuthorizeError, type AuthorizationRequest, redirectTo } from './authorization-request.js';
import { generateOpaqueSecret, hashOpaqueSecret } from './secrets.js';

/** RFC 6749 §4.1.2 ("a maximum authorization code lifetime of 10 minutes is RECOMMENDED"): one minute here. */
export const AUTHORIZATION_CODE_SECONDS = 60;

/**
 * The end of a successful /authorize: a code for the signed-in user, bound to the client, the
 * redirect URI, the PKCE challenge and the browser session, and the URI to send the browser to
 * (RFC 6749 §4.1.2, with `iss` per RFC 9207). The scope is settled here, against what the user
 * holds now: a scope the user lacks is invalid_scope at the redirect URI, as at the token endpoint.
 */
export async function issueAuthorizationCode(
  deps: Pick<Deps, 'db' | 'clock' | 'config' | 'log'>,
  request: AuthorizationRequest,
  session: Pick<BrowserSession, 'id' | 'user_id' | 'password_changed_at' | 'auth_time'>,
  ip: string,
): Promise<string> {
  const userScopes = await findUserScopes(deps.db, session.user_id);
  let scope: string[];
  try {
    scope = resolveScope({
      requested: request.scope,
      clientDefault: request.client.default_scopes,
      clientAllowed: request.client.allowed_scopes,
      subjectAllowed: [...userScopes, OPENID_SCOPE],
    });
  } catch (error) {
    if (error instanceof OAuthError) throw new AuthorizeError('invalid_scope', error.description, request.redirectUri, request.state);
    throw error;
  }
  const code = generateOpaqueSecret();
  const now = new Date(deps.clock.now());
  const fields = { user_id: session.user_id, client_id: request.client.id, ip, session_id: session.id, scope };
  const row = {
    code_hash: hashOpaqueSecret(code),
    client_id: request.client.id,
    user_id: session.user_id,
    browser_session_id: session.id,
    redirect_uri: request.redirectUri,
    redirect_uri_given: request.redirectUriGiven,
    code_challenge: request.codeChallenge,
    scope,
    nonce: request.nonce ?? null,
    password_changed_at: session.password_changed_at,
    auth_time: session.auth_time,
    created_at: now,
    expires_at: new Date(now.getTime() + AUTHORIZATION_CODE_SECONDS * 1000),
  };
  // The code and its audit row in one transaction; the signed-in user is the actor.
  await auditedChange(
    deps,
    { actor: { type: 'user', id: session.user_id }, ip },
    (trx) => insertAuthorizationCode(trx, row),
    () => ({ event: 'authorization_code_issued', fields }),
  );
  return redirectTo(request.redirectUri, { code, state: request.state, iss: deps.config.issuer });
}
