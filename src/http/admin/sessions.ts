import { Router } from 'express';
import { endUserBrowserSessions } from '../../db/browser-sessions.js';
import { findFamilyById, pageUserFamilies, revokeFamily, revokeUserFamilies } from '../../db/refresh-families.js';
import type { RefreshFamily } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { isUuid } from '../../ids.js';
import { invalidRequest } from '../../oauth/errors.js';
import { methodNotAllowed } from '../errors.js';
import { auditAdmin } from './auth.js';
import { notFound } from './errors.js';
import { page, readLimit, readQuery } from './input.js';
import { requireUser } from './users.js';

/** A session is a refresh-token family: one login and every token rotated from it. Never a token or its hash. */
function viewSession(family: RefreshFamily) {
  return {
    id: family.id,
    client_id: family.client_id,
    scope: family.scope.join(' '),
    created_at: family.created_at,
    last_used_at: family.last_used_at,
    expires_at: family.expires_at,
    revoked_at: family.revoked_at,
    revoked_reason: family.revoked_reason,
  };
}

/**
 * A user's sessions: list them (newest first, ended ones included until housekeeping removes
 * them), end all of them, or end one. Access tokens of an ended session stop working at Tessera's
 * own endpoints at once and elsewhere when they expire (ACCESS_TOKEN_TTL).
 */
export function sessionsRouter(deps: Deps): Router {
  const router = Router();
  const now = () => new Date(deps.clock.now());

  router.get('/users/:id/sessions', async (req, res) => {
    const query = readQuery(req, ['limit', 'after']);
    const limit = readLimit(query['limit']);
    const after = query['after'];
    if (after !== undefined && !isUuid(after)) throw invalidRequest('after must be the next_after of a previous page');
    const user = await requireUser(deps, req.params['id']!);
    const rows = await pageUserFamilies(deps.db, user.id, { limit: limit + 1, after });
    const { items, next_after } = page(rows, limit, (family) => family.id);
    res.json({ items: items.map(viewSession), next_after });
  });

  router.delete('/users/:id/sessions', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    const sessionsEnded = await revokeUserFamilies(deps.db, user.id, 'admin', now());
    // And the browser's sign-in sessions, so that no /authorize skips the page with an old cookie.
    await endUserBrowserSessions(deps.db, user.id, now());
    auditAdmin(deps, req, res, 'user_logged_out', { user_id: user.id, sessions_ended: sessionsEnded });
    res.json({ sessions_ended: sessionsEnded });
  });
  router.all('/users/:id/sessions', methodNotAllowed('GET', 'HEAD', 'DELETE'));

  /** Idempotent: ending a session that has already ended is a success that changes nothing. */
  router.delete('/users/:id/sessions/:sid', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    const sid = req.params['sid']!;
    const family = isUuid(sid) ? await findFamilyById(deps.db, sid) : undefined;
    if (family === undefined || family.user_id !== user.id) throw notFound('session');
    if (await revokeFamily(deps.db, family.id, 'admin', now())) {
      auditAdmin(deps, req, res, 'refresh_family_revoked', { reason: 'admin', family_id: family.id, user_id: user.id, client_id: family.client_id });
    }
    res.status(204).end();
  });
  router.all('/users/:id/sessions/:sid', methodNotAllowed('DELETE'));

  return router;
}
