import { Router } from 'express';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { createRole, removeRole, requireRole, updateRole } from '../../auth/roles.js';
import { CURSOR_KEY_PURPOSE, cursorPage } from '../../cursor.js';
import { pageRoles } from '../../db/roles.js';
import type { Deps } from '../../deps.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, adminChange } from './auth.js';
import { asAdminAction } from './errors.js';
import { readBody, readCursor, readLimit, readQuery, requireSomeField } from './input.js';

const CREATE = { name: { type: 'string', required: true }, description: { type: 'string' }, scopes: { type: 'strings' } } as const;
const UPDATE = { description: { type: 'string' }, scopes: { type: 'strings' } } as const;

/**
 * Roles: named sets of scopes that users hold. The rules are src/auth/roles.ts, the same the CLI
 * applies. A role's scope change reaches its users at their next login or refresh.
 */
export function rolesRouter(deps: Deps): Router {
  const router = Router();
  const cursorKeys = deps.keyRing.derive(CURSOR_KEY_PURPOSE);

  router.post('/roles', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const role = await asAdminAction('role', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => createRole(trx, body),
        (created) => ({ event: 'role_changed', fields: { role: created.name, created: true, scopes: created.scopes } }),
      ),
    );
    res.status(201).location(`/admin/roles/${role.name}`).json(role);
  });

  router.get('/roles', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor']);
    const limit = readLimit(query['limit']);
    const rows = await pageRoles(deps.db, { limit: limit + 1, after: readCursor(cursorKeys, 'roles', query['cursor'])?.[0] });
    res.json(cursorPage(cursorKeys, 'roles', rows, limit, (role) => [role.name]));
  });
  router.all('/roles', methodNotAllowed('GET', 'HEAD', 'POST'));

  router.get('/roles/:name', async (req, res) => {
    res.json(await asAdminAction('role', () => requireRole(deps.db, req.params['name']!)));
  });

  router.patch('/roles/:name', async (req, res) => {
    const body = readBody(req.body, UPDATE);
    requireSomeField(body);
    // A role may be how the acting admin holds the admin scope: a change that takes it from them is refused.
    const role = await asAdminAction('role', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => updateRole(db, req.params['name']!, body)),
        (updated) => ({ event: 'role_changed', fields: { role: updated.name, updated: true, ...body } }),
      ),
    );
    res.json(role);
  });

  router.delete('/roles/:name', async (req, res) => {
    const name = req.params['name']!;
    await asAdminAction('role', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => removeRole(db, name)),
        () => ({ event: 'role_changed', fields: { role: name, deleted: true } }),
      ),
    );
    res.status(204).end();
  });
  router.all('/roles/:name', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  return router;
}
