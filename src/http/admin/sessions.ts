import { Router } from 'express';
import { CURSOR_KEY_PURPOSE, cursorPage } from '../../cursor.js';
import { endUserBrowserSessions } from '../../db/browser-sessions.js';
import { findFamilyById, pageFamilies, revokeFamily, revokeUserFamilies } from '../../db/refresh-families.js';
import type { RefreshFamily } from '../../db/schema.js';
import type { Deps } from '../../deps.js';
import { isUuid } from '../../ids.js';
import { hasControlCharacters } from '../../auth/passwords.js';
import { invalidRequest } from '../../oauth/errors.js';
import { methodNotAllowed } from '../errors.js';
import { adminChange } from './auth.js';
import { notFound } from './errors.js';
import { readCursor, readLimit, readQuery, refuseBothCursors } from './input.js';
import { requireUser } from './users.js';

/** A session is a refresh-token family: one login and every token rotated from it. Never a token or its hash. */
function viewSession(family: RefreshFamily) {
  return {
    id: family.id,
    user_id: family.user_id,
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
  const cursorKeys = deps.keyRing.derive(CURSOR_KEY_PURPOSE);

  /** One page of sessions, newest first, by the filters `query` holds (user or client), as every admin list pages. */
  const listSessions = async (query: Readonly<Record<string, string | undefined>>, userId: string | undefined) => {
    const limit = readLimit(query['limit']);
    refuseBothCursors(query);
    const after = query['after'];
    if (after !== undefined && !isUuid(after)) throw invalidRequest('after must be the next_after of a previous page');
    const position = readCursor(cursorKeys, 'sessions', query['cursor'], 2);
    const createdAt = position && new Date(position[0]!);
    if (position !== undefined && (!isUuid(position[1]!) || Number.isNaN(createdAt!.getTime()))) {
      throw invalidRequest('cursor must be the next_cursor of a previous page');
    }
    const clientId = query['client'];
    if (clientId !== undefined && (clientId === '' || clientId.length > 64 || hasControlCharacters(clientId))) {
      throw invalidRequest('client must be a client id: 1 to 64 characters without control characters');
    }
    const rows = await pageFamilies(deps.db, { userId, clientId }, {
      limit: limit + 1,
      after,
      afterPosition: position && { createdAt: createdAt!, id: position[1]! },
    });
    const { items, next_cursor } = cursorPage(cursorKeys, 'sessions', rows, limit, (family) => [family.created_at.toISOString(), family.id]);
    // next_after: the session-id form of the first release of this list, for its clients.
    return { items: items.map(viewSession), next_cursor, next_after: next_cursor === null ? null : items[items.length - 1]!.id };
  };

  router.get('/users/:id/sessions', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor', 'after', 'client']);
    const user = await requireUser(deps, req.params['id']!);
    res.json(await listSessions(query, user.id));
  });

  router.delete('/users/:id/sessions', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    const sessionsEnded = await adminChange(
      deps,
      req,
      res,
      async (trx) => {
        const ended = await revokeUserFamilies(trx, user.id, 'admin', now());
        // And the browser's sign-in sessions, so that no /authorize skips the page with an old cookie.
        await endUserBrowserSessions(trx, user.id, now());
        return ended;
      },
      (ended) => ({ event: 'user_logged_out', fields: { user_id: user.id, sessions_ended: ended } }),
    );
    res.json({ sessions_ended: sessionsEnded });
  });
  router.all('/users/:id/sessions', methodNotAllowed('GET', 'HEAD', 'DELETE'));

  /** Every user's sessions, or those of one user or one client: what a console shows. */
  router.get('/sessions', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor', 'user', 'client']);
    const userId = query['user'];
    if (userId !== undefined && !isUuid(userId)) throw invalidRequest('user must be a user id');
    res.json(await listSessions(query, userId));
  });
  router.all('/sessions', methodNotAllowed('GET', 'HEAD'));

  /** Idempotent: ending a session that has already ended is a success that changes nothing. */
  router.delete('/users/:id/sessions/:sid', async (req, res) => {
    const user = await requireUser(deps, req.params['id']!);
    const sid = req.params['sid']!;
    const family = isUuid(sid) ? await findFamilyById(deps.db, sid) : undefined;
    if (family === undefined || family.user_id !== user.id) throw notFound('session');
    await adminChange(
      deps,
      req,
      res,
      (trx) => revokeFamily(trx, family.id, 'admin', now()),
      (revoked) =>
        revoked ? { event: 'refresh_family_revoked', fields: { reason: 'admin', family_id: family.id, user_id: user.id, client_id: family.client_id } } : undefined,
    );
    res.status(204).end();
  });
  router.all('/users/:id/sessions/:sid', methodNotAllowed('DELETE'));

  return router;
}
