import { Router } from 'express';
import { findUserById, findUserRoles, findUserScopes } from '../db/users.js';
import type { Deps } from '../deps.js';
import { OAuthError } from '../oauth/errors.js';
import { authenticateBearer, isUserId } from './bearer.js';
import { methodNotAllowed, setNoStore } from './errors.js';

/** GET /userinfo and its alias GET /users/me: the bearer's own profile, never the password hash. */
export function userinfoRouter(deps: Deps): Router {
  const router = Router();
  for (const path of ['/userinfo', '/users/me']) {
    router.get(path, async (req, res) => {
      setNoStore(res);
      const claims = await authenticateBearer(deps, req);
      // A client_credentials token's sub is a client id, not a user: no profile.
      const user = isUserId(claims.sub) ? await findUserById(deps.db, claims.sub) : undefined;
      // A disabled or deleted user's tokens stop working here at once, whatever their exp says.
      if (user === undefined || user.disabled) {
        throw new OAuthError('invalid_token', 'the access token is not valid', {
          headers: { 'WWW-Authenticate': 'Bearer realm="tessera", error="invalid_token"' },
        });
      }
      const [roles, scopes] = await Promise.all([findUserRoles(deps.db, user.id), findUserScopes(deps.db, user.id)]);
      res.json({
        sub: user.id,
        username: user.username,
        preferred_username: user.username,
        roles,
        scopes,
        updated_at: Math.floor(user.updated_at.getTime() / 1000),
      });
    });
    router.all(path, methodNotAllowed('GET', 'HEAD'));
  }
  return router;
}
