import { audit } from '../audit.js';
import { hasControlCharacters, MAX_PASSWORD_BYTES } from '../auth/passwords.js';
import { formatScope, parseScope, resolveScope } from '../auth/scopes.js';
import { normaliseUsername } from '../auth/usernames.js';
import { findUserByUsername, findUserScopes, updatePasswordHash } from '../db/users.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { startSession } from '../refresh/rotation.js';
import { signAccessToken } from '../tokens/access-token.js';
import { readUserClaims } from '../tokens/user-claims.js';
import type { Grant, TokenRequest, TokenResponse } from './grant.js';

const MAX_USERNAME_INPUT_BYTES = 256;

/**
 * RFC 6749 §4.3, the resource owner password credentials grant. RFC 9700 §2.4 discourages it;
 * Tessera offers it to first-party clients an operator explicitly allows (DESIGN.md).
 */
export const passwordGrant: Grant = {
  grantType: 'password',
  async handle(request: TokenRequest, deps: Deps): Promise<TokenResponse> {
    const { username, password } = readCredentials(request.params);
    const requestedScope = parseScope(request.params['scope']);
    const user = await authenticateUser(deps, username, password, request);

    const [subjectAllowed, userClaims] = await Promise.all([findUserScopes(deps.db, user.id), readUserClaims(deps, request.client, user.id)]);
    const scope = resolveScope({
      requested: requestedScope,
      clientDefault: request.client.default_scopes,
      clientAllowed: request.client.allowed_scopes,
      subjectAllowed,
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
    if (session === undefined) throw new OAuthError('invalid_grant', 'the username or password is incorrect');
    const accessToken = await signAccessToken(deps, {
      sub: user.id,
      clientId: request.client.id,
      scope,
      audience: request.client.audience,
      authTime: Math.floor(authTime.getTime() / 1000),
      sid: session.familyId,
      ...(userClaims === undefined ? {} : { userClaims }),
    });
    audit(deps.log, 'login_succeeded', { user_id: user.id, client_id: request.client.id, ip: request.ip, family_id: session.familyId });
    return {
      access_token: accessToken.token,
      token_type: 'Bearer',
      expires_in: accessToken.expiresIn,
      scope: formatScope(scope),
      ...(session.token === undefined ? {} : { refresh_token: session.token }),
    };
  },
};

/** Checked before any hashing: missing, blank, oversized or control-character input is invalid_request. */
function readCredentials(params: TokenRequest['params']): { username: string; password: string } {
  const username = params['username'];
  const password = params['password'];
  if (username === undefined || username.trim() === '') throw invalidRequest('username is required');
  if (password === undefined || password.trim() === '') throw invalidRequest('password is required');
  if (Buffer.byteLength(username) > MAX_USERNAME_INPUT_BYTES) throw invalidRequest('username is too long');
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) throw invalidRequest('password is too long');
  if (hasControlCharacters(username) || hasControlCharacters(password)) {
    throw invalidRequest('username and password must not contain control characters');
  }
  return { username, password };
}

/**
 * One Argon2 verify whatever happens: an unknown user is verified against a dummy hash at the same
 * parameters, and a disabled user's password is still checked, so status, body, headers and time
 * are the same for unknown, wrong and disabled (ATTACKS.md C1, C2). The account layers run around
 * it (src/limits/login-attempts.ts): a limited account is refused before any of this, and only a
 * verified wrong password counts against the account (ATTACKS.md I1).
 */
async function authenticateUser(deps: Deps, username: string, password: string, request: TokenRequest) {
  const { user, matches } = await deps.limits.logins.attempt(request.ip, username, async () => {
    const normalised = normaliseUsername(username);
    const user = normalised === undefined ? undefined : await findUserByUsername(deps.db, normalised);
    const hash = user?.password_hash ?? (await deps.passwords.dummyHash());
    const matches = await deps.passwords.verify(hash, password);
    // An unknown user's dummy verify fails like a wrong password; a disabled user's right password is no wrong one.
    const verdict = user === undefined || !matches ? 'wrong_password' : user.disabled ? 'not_counted' : 'right_password';
    return { verdict, result: { user, matches } };
  });

  if (user === undefined || !matches || user.disabled) {
    const reason = user === undefined ? 'unknown_user' : user.disabled ? 'user_disabled' : 'wrong_password';
    audit(deps.log, 'login_failed', { reason, user_id: user?.id, client_id: request.client.id, ip: request.ip });
    throw new OAuthError('invalid_grant', 'the username or password is incorrect');
  }
  if (deps.passwords.needsRehash(user.password_hash)) await rehash(deps, user.id, password);
  return user;
}

/** The hashing parameters were raised since this hash was made; upgrade it while we hold the password. */
async function rehash(deps: Deps, userId: string, password: string): Promise<void> {
  try {
    await updatePasswordHash(deps.db, userId, await deps.passwords.hash(password), new Date(deps.clock.now()));
    audit(deps.log, 'password_rehashed', { user_id: userId });
  } catch (error) {
    deps.log.warn({ err: error, user_id: userId }, 'could not rehash a password; will retry at the next login');
  }
}
