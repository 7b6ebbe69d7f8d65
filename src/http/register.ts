import { Router } from 'express';
import { auditedChange } from '../audit/writer.js';
import { hashAhead } from '../auth/prehash.js';
import { normaliseUsername } from '../auth/usernames.js';
import { AccountError, createAccount } from '../auth/accounts.js';
import { hasControlCharacters, MAX_PASSWORD_BYTES } from '../auth/passwords.js';
import type { Deps } from '../deps.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { methodNotAllowed } from './errors.js';
import { requestIdOf } from './request-log.js';
import { noStore, parseForm, parseJson, readParams, rejectQueryParameters, requireFormOrJson } from './form.js';

/**
 * POST /register, only with REGISTRATION=open (otherwise the endpoint does not exist): a new user
 * with no scopes, under the same username rules and password policy as everywhere, with an
 * optional `email` (never verified: only an operator can say it is) and `name`. Rate-limited
 * per IP like logins. A taken username or email is a 409 that says only that this account cannot
 * be registered; nothing else about existing accounts is revealed.
 */
export function registerRouter(deps: Deps): Router {
  const router = Router();
  if (deps.config.registration !== 'open') return router;
  router.post('/register', noStore, requireFormOrJson, parseForm, parseJson, ...deps.limits.register, async (req, res) => {
    rejectQueryParameters(req);
    const params = readParams(req.body);
    const { username, password, email, name } = params;
    if (!username || !password) throw invalidRequest('username and password are required');
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES || hasControlCharacters(password) || hasControlCharacters(username)) {
      throw invalidRequest('username and password must be short and free of control characters');
    }
    try {
      // An empty email or name is none.
      const profile = { email: email || undefined, name: name || undefined, emailVerified: false };
      const passwords = await hashAhead(deps.passwords, password, normaliseUsername(username));
      const user = await auditedChange(
        deps,
        { actor: { type: 'user' }, ip: req.ip, requestId: requestIdOf(res) },
        (trx) => createAccount(trx, passwords, { username, password, ...profile }, new Date(deps.clock.now())),
        (created) => ({ event: 'user_registered', fields: { user_id: created.id, ip: req.ip } }),
      );
      res.status(201).json({ sub: user.id, username: user.username });
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      if (error.code === 'username_taken' || error.code === 'email_taken') {
        throw new OAuthError('invalid_request', `this ${error.code === 'email_taken' ? 'email' : 'username'} cannot be registered`, { status: 409 });
      }
      throw invalidRequest(error.message);
    }
  });
  router.all('/register', methodNotAllowed('POST'));
  return router;
}
