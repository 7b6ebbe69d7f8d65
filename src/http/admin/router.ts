import { Router } from 'express';
import type { Deps } from '../../deps.js';
import { noStore, parseJson } from '../form.js';
import { requireAdmin } from './auth.js';
import { auditRouter } from './audit.js';
import { clientsRouter } from './clients.js';
import { requireJsonBody } from './input.js';
import { keysRouter } from './keys.js';
import { rolesRouter } from './roles.js';
import { sessionsRouter } from './sessions.js';
import { usersRouter } from './users.js';

/**
 * The admin API under /admin: users, sessions, roles, clients, keys, the audit log. Every request is rate-limited
 * per IP first (before any token or database work), then needs an admin's access token, and only
 * then is its JSON body read. Responses are never cached: some carry a secret shown once.
 */
export function adminRouter(deps: Deps): Router {
  const router = Router();
  router.use('/admin', noStore, ...deps.limits.admin, requireAdmin(deps), requireJsonBody, parseJson);
  router.use('/admin', usersRouter(deps), sessionsRouter(deps), rolesRouter(deps), clientsRouter(deps), keysRouter(deps), auditRouter(deps));
  return router;
}
