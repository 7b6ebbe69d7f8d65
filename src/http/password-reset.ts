import { Router } from 'express';
import { hasControlCharacters, MAX_PASSWORD_BYTES } from '../auth/passwords.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { confirmPasswordReset, requestPasswordReset, resetAccountKey, type ResetRequest, sendResetMail } from '../password-reset/reset.js';
import { methodNotAllowed } from './errors.js';
import { auditContextOf } from './request-log.js';
import { noStore, type Params, parseForm, parseJson, readParams, rejectQueryParameters, requireFormOrJson } from './form.js';

/** Longer than any username or email Tessera keeps. */
const MAX_NAME_BYTES = 256;

/**
 * POST /password-reset and POST /password-reset/confirm (DESIGN.md, "Password reset"), only with
 * SMTP_URL, MAIL_FROM and PASSWORD_RESET_URL set (otherwise neither exists: 404). Both pass the
 * password_reset layer per IP first; a request also counts per account named.
 */
export function passwordResetRouter(deps: Deps): Router {
  const router = Router();
  const mailer = deps.mailer;
  if (deps.config.passwordReset === undefined || mailer === undefined) return router;
  const steps = [noStore, requireFormOrJson, parseForm, parseJson, ...deps.limits.passwordReset] as const;

  // 202 whatever the name: known or not, verified email or not, mail server up or not. The same
  // work is done before the answer either way, and the mail is sent after it.
  router.post('/password-reset', ...steps, async (req, res) => {
    rejectQueryParameters(req);
    const request = readResetRequest(readParams(req.body));
    await deps.limits.countResetRequest(req.ip ?? '', resetAccountKey(request));
    const delivery = await requestPasswordReset(deps, request);
    // Batched like a login (no change of its own to share a transaction with): the same work for a known name and an unknown one.
    const context = auditContextOf(req, res, { type: 'user', id: delivery?.userId });
    deps.audit.record('password_reset_requested', { ip: req.ip, user_id: delivery?.userId, mail: delivery !== undefined }, context);
    res.status(202).json({ message: 'if the account exists and has a verified email, a reset link is on its way there' });
    // After the answer has gone out: composing and sending the mail is no part of its time.
    if (delivery !== undefined) setImmediate(() => void sendResetMail(deps, mailer, delivery));
  });
  router.all('/password-reset', methodNotAllowed('POST'));

  router.post('/password-reset/confirm', ...steps, async (req, res) => {
    rejectQueryParameters(req);
    const params = readParams(req.body);
    const { token, password } = params;
    if (!token || !password) throw invalidRequest('token and password are required');
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES || hasControlCharacters(password)) {
      throw invalidRequest('the password must be at most 1 KiB and free of control characters');
    }
    const context = auditContextOf(req, res, { type: 'user' });
    try {
      // password_reset_completed is written in the transaction of the reset, naming its user.
      await confirmPasswordReset(deps, { token, password }, context);
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_grant') deps.audit.record('password_reset_failed', { reason: 'invalid_token', ip: req.ip }, context);
      throw error;
    }
    res.status(204).end();
  });
  router.all('/password-reset/confirm', methodNotAllowed('POST'));
  return router;
}

/** Exactly one of `username` and `email`, short and free of control characters. */
function readResetRequest(params: Params): ResetRequest {
  const { username, email } = params;
  if ((username === undefined) === (email === undefined)) throw invalidRequest('give either username or email');
  const name = (username ?? email)!;
  if (name.trim() === '' || Buffer.byteLength(name) > MAX_NAME_BYTES || hasControlCharacters(name)) {
    throw invalidRequest(`${username === undefined ? 'email' : 'username'} must be 1 to ${MAX_NAME_BYTES} bytes without control characters`);
  }
  return username === undefined ? { email: name } : { username: name };
}
