import { Router } from 'express';
import { AuditQueryError, listAuditEvents, readAuditFilter } from '../../audit/reader.js';
import { CURSOR_KEY_PURPOSE } from '../../cursor.js';
import type { Deps } from '../../deps.js';
import { invalidRequest } from '../../oauth/errors.js';
import { methodNotAllowed } from '../errors.js';
import { readLimit, readQuery } from './input.js';

/**
 * GET /admin/audit: the durable audit log (src/audit/), newest first, filtered by type, actor,
 * subject, client and time, paged with the same opaque cursor as every admin list.
 */
export function auditRouter(deps: Deps): Router {
  const router = Router();
  const cursorKeys = deps.keyRing.derive(CURSOR_KEY_PURPOSE);

  router.get('/audit', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor', 'type', 'actor_type', 'actor', 'subject', 'client', 'since', 'until']);
    const limit = readLimit(query['limit']);
    try {
      const filter = readAuditFilter({
        types: query['type'] === undefined ? undefined : [query['type']],
        actorType: query['actor_type'],
        actor: query['actor'],
        subject: query['subject'],
        client: query['client'],
        since: query['since'],
        until: query['until'],
      });
      res.json(await listAuditEvents(deps.db, cursorKeys, filter, { limit, cursor: query['cursor'] }));
    } catch (error) {
      throw error instanceof AuditQueryError ? invalidRequest(error.message) : error;
    }
  });
  router.all('/audit', methodNotAllowed('GET', 'HEAD'));

  return router;
}
