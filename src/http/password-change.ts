import { Router } from 'express';
import { auditedChange } from '../audit/writer.js';
import { hashAhead } from '../auth/prehash.js';
import { AccountError, setAccountPassword } from '../auth/accounts.js';
import { hasControlCharacters, MAX_PASSWORD_BYTES } from '../auth/passwords.js';
import type { Deps } from '../deps.js';
import { invalidRequest } from '../oauth/errors.js';
import { authenticateUser } from './bearer.js';
import { methodNotAllowed } from './errors.js';
import { auditContextOf } from './request-log.js';
import { noStore, parseForm, parseJson, readParams, rejectQueryParameters, requireFormOrJson } from './form.js';

/**
 * POST /users/me/password: the bearer changes their own password, proving the current one. Every
 * session of the user ends (logout everywhere), this one included: their access tokens stop
 * working at Tessera's own endpoints at once, and elsewhere within ACCESS_TOKEN_TTL. 204 on success.
 * A wrong current password counts as a failed login of the account, and a limited account is
 * refused (429) before the password is verified.
 */
export function passwordChangeRouter(deps: Deps): Router {
  const router = Router();
  router.post('/users/me/password', noStore, requireFormOrJson, parseForm, parseJson, ...deps.limits.passwordChange, async (req, res) => {
    rejectQueryParameters(req);
    const { claims, user } = await authenticateUser(deps, req);
    const params = readParams(req.body);
    const current = params['current_password'];
    const next = params['new_password'];
    if (!current || !next) throw invalidRequest('current_password and new_password are required');
    if (current === next) throw invalidRequest('the new password must differ from the current one');
    if ([current, next].some((value) => Buffer.byteLength(value) > MAX_PASSWORD_BYTES || hasControlCharacters(value))) {
      throw invalidRequest('passwords must be at most 1 KiB and free of control characters');
    }
    // A guess at the current password is a guess at the account: the same layers and keys as a login (ATTACKS.md I4).
    const matches = await deps.limits.logins.attempt(req.ip ?? '', user.username, async () => {
      const right = await deps.passwords.verify(user.password_hash, current);
      return { verdict: right ? 'right_password' : 'wrong_password', result: right };
    });
    const context = auditContextOf(req, res, { type: 'user', id: user.id });
    if (!matches) {
      deps.audit.record('password_change_failed', { user_id: user.id, client_id: claims.client_id, ip: req.ip }, context);
      throw invalidRequest('the current password is incorrect');
    }
    try {
      const passwords = await hashAhead(deps.passwords, next, user.username);
      await auditedChange(
        deps,
        context,
        (trx) => setAccountPassword(trx, passwords, user, next, new Date(deps.clock.now())),
        (sessionsEnded) => ({ event: 'password_changed', fields: { user_id: user.id, client_id: claims.client_id, ip: req.ip, sessions_ended: sessionsEnded } }),
      );
    } catch (error) {
      if (error instanceof AccountError) throw invalidRequest(error.message);
      throw error;
    }
    res.status(204).end();
  });
  router.all('/users/me/password', methodNotAllowed('POST'));
  return router;
}
