import { Router } from 'express';
import { findUserRoles, findUserScopes } from '../db/users.js';
import type { Deps } from '../deps.js';
import { authenticateUser } from './bearer.js';
import { methodNotAllowed, setNoStore } from './errors.js';

/** GET /userinfo and its alias GET /users/me: the bearer's own profile, never the password hash. */
export function userinfoRouter(deps: Deps): Router {
  const router = Router();
  for (const path of ['/userinfo', '/users/me']) {
    router.get(path, async (req, res) => {
      setNoStore(res);
      // A disabled or deleted user's tokens, or those of an ended session, stop working here at once.
      const { user } = await authenticateUser(deps, req);
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
