import { Router } from 'express';
import { findUserProfile } from '../db/users.js';
import type { Deps } from '../deps.js';
import { authenticateUserWith } from './bearer.js';
import { methodNotAllowed, setNoStore } from './errors.js';

/** GET /userinfo and its alias GET /users/me: the bearer's own profile, never the password hash. */
export function userinfoRouter(deps: Deps): Router {
  const router = Router();
  for (const path of ['/userinfo', '/users/me']) {
    router.get(path, async (req, res) => {
      setNoStore(res);
      // A disabled or deleted user's tokens, or those of an ended session, stop working here at once.
      // The user, the session's liveness, roles and scopes: one round trip.
      const { user } = await authenticateUserWith(deps, req, findUserProfile);
      res.json({
        sub: user.id,
        username: user.username,
        preferred_username: user.username,
        roles: user.roles,
        scopes: user.scopes,
        updated_at: Math.floor(user.updated_at.getTime() / 1000),
      });
    });
    router.all(path, methodNotAllowed('GET', 'HEAD'));
  }
  return router;
}
