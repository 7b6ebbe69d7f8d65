import { auditedChange } from '../audit/writer.js';
import { findLoginUser, updatePasswordHash } from '../db/users.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { hasControlCharacters, MAX_PASSWORD_BYTES } from './passwords.js';
import { normaliseUsername } from './usernames.js';

const MAX_USERNAME_INPUT_BYTES = 256;

/** The one message for an unknown user, a wrong password and a disabled user, wherever a person signs in. */
export const SIGN_IN_FAILED = 'the username or password is incorrect';

/** Where a password is being verified: for the audit line. */
export interface LoginContext {
  readonly ip: string;
  readonly clientId: string;
  /** The request's X-Request-Id, for the audit row. */
  readonly requestId?: string | undefined;
}

/** Checked before any hashing: missing, blank, oversized or control-character input is invalid_request. */
export function readCredentials(params: Readonly<Record<string, string | undefined>>): { username: string; password: string } {
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
 * Used by the password grant and the hosted sign-in page alike.
 * One Argon2 verify whatever happens: an unknown user is verified against a dummy hash at the same
 * parameters, and a disabled user's password is still checked, so status, body, headers and time
 * are the same for unknown, wrong and disabled (ATTACKS.md C1, C2). The account layers run around
 * it (src/limits/login-attempts.ts): a limited account is refused before any of this, and only a
 * verified wrong password counts against the account (ATTACKS.md I1).
 */
export async function authenticateUser(deps: Deps, username: string, password: string, request: LoginContext) {
  const { user, matches } = await deps.limits.logins.attempt(request.ip, username, async () => {
    const normalised = normaliseUsername(username);
    const user = normalised === undefined ? undefined : await findLoginUser(deps.db, normalised);
    const hash = user?.password_hash ?? (await deps.passwords.dummyHash());
    const matches = await deps.passwords.verify(hash, password);
    // An unknown user's dummy verify fails like a wrong password; a disabled user's right password is no wrong one.
    const verdict = user === undefined || !matches ? 'wrong_password' : user.disabled ? 'not_counted' : 'right_password';
    return { verdict, result: { user, matches } };
  });

  if (user === undefined || !matches || user.disabled) {
    const reason = user === undefined ? 'unknown_user' : user.disabled ? 'user_disabled' : 'wrong_password';
    // Nobody proved who they are: the client that asked is the actor.
    const context = { actor: { type: 'client', id: request.clientId }, requestId: request.requestId } as const;
    deps.audit.record('login_failed', { reason, user_id: user?.id, client_id: request.clientId, ip: request.ip }, context);
    throw new OAuthError('invalid_grant', SIGN_IN_FAILED);
  }
  if (deps.passwords.needsRehash(user.password_hash)) await rehash(deps, user.id, password, request);
  return user;
}

/** The hashing parameters were raised since this hash was made; upgrade it while we hold the password. */
async function rehash(deps: Deps, userId: string, password: string, request: LoginContext): Promise<void> {
  try {
    const hash = await deps.passwords.hash(password);
    await auditedChange(
      deps,
      { actor: { type: 'system' }, ip: request.ip, requestId: request.requestId },
      (trx) => updatePasswordHash(trx, userId, hash, new Date(deps.clock.now())),
      () => ({ event: 'password_rehashed', fields: { user_id: userId } }),
    );
  } catch (error) {
    deps.log.warn({ err: error, user_id: userId }, 'could not rehash a password; will retry at the next login');
  }
}
