import type { Kysely } from 'kysely';
import type { AuditContext } from '../audit/entry.js';
import { auditedChange } from '../audit/writer.js';
import { AccountError, setAccountPassword } from '../auth/accounts.js';
import { hashAhead } from '../auth/prehash.js';
import { emailKey } from '../auth/profile.js';
import { normaliseUsername } from '../auth/usernames.js';
import { findLiveResetToken, insertResetToken, type ResetLookup, useResetToken } from '../db/password-reset-tokens.js';
import type { Database } from '../db/schema.js';
import { findUserById } from '../db/users.js';
import type { Deps } from '../deps.js';
import type { Mailer } from '../mail/mailer.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { generateResetToken, hashResetToken, isWellFormedResetToken, RESET_TOKEN_TTL_SECONDS } from './tokens.js';

/** Who asked for a reset: a username or an email, as typed. */
export type ResetRequest = { readonly username: string } | { readonly email: string };

/** The key a request is counted under per account: the same whether or not the account exists. */
export function resetAccountKey(request: ResetRequest): string {
  return 'username' in request ? `username:${normaliseUsername(request.username) ?? request.username}` : `email:${emailKey(request.email.trim())}`;
}

/**
 * Self-service password reset, step one (DESIGN.md). The same work whatever the input: a token is
 * generated and hashed, and one statement stores it if, and only if, the name is a known, enabled
 * user with a verified email (src/db/password-reset-tokens.ts). Returns the mail to send, off the
 * response path (sendResetMail), or undefined: the caller answers the same either way.
 */
export async function requestPasswordReset(
  deps: Pick<Deps, 'db' | 'clock' | 'config'>,
  request: ResetRequest,
): Promise<{ userId: string; to: string; link: string } | undefined> {
  const config = deps.config.passwordReset;
  if (config === undefined) return undefined;
  const token = generateResetToken();
  const now = new Date(deps.clock.now());
  // A name that cannot be one (malformed) still runs the statement, with a key that matches nobody.
  const lookup: ResetLookup =
    'username' in request ? { username: normaliseUsername(request.username) ?? '' } : { emailKey: emailKey(request.email.trim()) };
  const stored = await insertResetToken(deps.db, lookup, {
    tokenHash: hashResetToken(token),
    now,
    expiresAt: new Date(now.getTime() + RESET_TOKEN_TTL_SECONDS * 1000),
  });
  if (stored === undefined) return undefined;
  const link = new URL(config.resetUrl);
  link.searchParams.set('token', token);
  return { userId: stored.user_id, to: stored.email, link: link.href };
}

/**
 * Sends the reset mail; never rejects. A mail server that is down or refuses is logged (without
 * the link, which is a secret) and is nothing the requester hears about: they were answered 202
 * before this began.
 */
export async function sendResetMail(
  deps: Pick<Deps, 'log'>,
  mailer: Mailer,
  delivery: { readonly userId: string; readonly to: string; readonly link: string },
): Promise<void> {
  try {
    await mailer.send({
      to: delivery.to,
      subject: 'Reset your password',
      text:
        'Someone (hopefully you) asked to reset the password of your account.\n\n' +
        `To choose a new password, open this link within ${RESET_TOKEN_TTL_SECONDS / 60} minutes:\n\n${delivery.link}\n\n` +
        'The link works once. If you did not ask for it, ignore this mail: your password stays as it is.\n',
    });
    deps.log.info({ user_id: delivery.userId }, 'password reset mail sent');
  } catch (error) {
    // Only what identifies the failure: an SMTP error may echo the command or the server's reply, never the body.
    const { code, responseCode, command } = (error ?? {}) as { code?: unknown; responseCode?: unknown; command?: unknown };
    deps.log.error({ user_id: delivery.userId, code, response_code: responseCode, command }, 'the password reset mail could not be sent');
  }
}

/** Unknown, used and expired tokens all get this one answer (the `invalid_grant` of RFC 6749 §5.2: a grant that is no good). */
export function invalidResetToken(): OAuthError {
  return new OAuthError('invalid_grant', 'the password reset token is invalid, expired or already used');
}

/**
 * Step two: the token's user gets `password` under the policy, and in the same transaction the
 * token (and every other one of the user) is used up and every session of the user ends, as a
 * password change does (setAccountPassword): their refresh tokens stop working, and their access
 * tokens stop working at Tessera's own endpoints at once. A token that is not live, or a password
 * the policy refuses, changes nothing. Returns the user and how many sessions ended.
 */
export async function confirmPasswordReset(
  deps: Pick<Deps, 'db' | 'clock' | 'passwords' | 'log'>,
  input: { readonly token: string; readonly password: string },
  /** Where the request came from: the audit event password_reset_completed is written with the change. */
  context: AuditContext,
): Promise<{ userId: string; sessionsEnded: number }> {
  if (!isWellFormedResetToken(input.token)) throw invalidResetToken();
  const tokenHash = hashResetToken(input.token);
  const now = new Date(deps.clock.now());
  // Read first, so that an unknown token costs no Argon2 work; used in the transaction below.
  const live = await findLiveResetToken(deps.db, tokenHash, now);
  const user = live === undefined ? undefined : await findUserById(deps.db, live.user_id);
  if (user === undefined || user.disabled) throw invalidResetToken();
  const useToken = async (trx: Kysely<Database>) => {
    if ((await useResetToken(trx, tokenHash, now))?.user_id !== user.id) throw invalidResetToken();
  };
  try {
    // Hashed before the transaction, which then holds its connection only for the writes.
    const passwords = await hashAhead(deps.passwords, input.password, user.username);
    // The token proved control of the user's mailbox: the user is the actor.
    const sessionsEnded = await auditedChange(
      deps,
      { ...context, actor: { type: 'user', id: user.id } },
      (trx) => setAccountPassword(trx, passwords, user, input.password, now, useToken),
      (ended) => ({ event: 'password_reset_completed', fields: { user_id: user.id, ip: context.ip, sessions_ended: ended } }),
    );
    return { userId: user.id, sessionsEnded };
  } catch (error) {
    if (error instanceof AccountError && error.code === 'weak_password') throw invalidRequest(error.message);
    // setAccountPassword's other refusal, not_found, cannot happen here: a user's reset tokens go
    // with the user (on delete cascade), and useToken, first in the transaction, holds the token's
    // row. A user deleted before leaves no token to use; a deletion after waits on that row.
    throw error;
  }
}

