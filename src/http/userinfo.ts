import { Router } from 'express';
import type { User } from '../db/schema.js';
import { findUserProfile } from '../db/users.js';
import type { Deps } from '../deps.js';
import { authenticateUserWith } from './bearer.js';
import { methodNotAllowed, setNoStore } from './errors.js';

/**
 * OIDC Core §5.4: the `email` scope asks for `email` and `email_verified`, `profile` for `name`
 * (Tessera keeps no other profile claim). A claim with no value is left out, never null (§5.3.2).
 */
function standardClaims(user: Pick<User, 'email' | 'email_verified' | 'name'>, scope: readonly string[]) {
  return {
    ...(scope.includes('email') && user.email !== null ? { email: user.email, email_verified: user.email_verified } : {}),
    ...(scope.includes('profile') && user.name !== null ? { name: user.name } : {}),
  };
}

/** GET /userinfo and its alias GET /users/me: the bearer's own profile, never the password hash. */
export function userinfoRouter(deps: Deps): Router {
  const router = Router();
  for (const path of ['/userinfo', '/users/me']) {
    router.get(path, async (req, res) => {
      setNoStore(res);
      // A disabled or deleted user's tokens, or those of an ended session, stop working here at once.
      // The user, the session's liveness, roles and scopes: one round trip.
      const { claims, user } = await authenticateUserWith(deps, req, findUserProfile);
      const granted = claims.scope.split(' ');
      res.json({
        sub: user.id,
        username: user.username,
        preferred_username: user.username,
        ...standardClaims(user, granted),
        roles: user.roles,
        scopes: user.scopes,
        updated_at: Math.floor(user.updated_at.getTime() / 1000),
      });
    });
    router.all(path, methodNotAllowed('GET', 'HEAD'));
  }
  return router;
}
