import { Router } from 'express';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { createRole, removeRole, requireRole, updateRole } from '../../auth/roles.js';
import { listRoles } from '../../db/roles.js';
import type { Deps } from '../../deps.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, auditAdmin } from './auth.js';
import { asAdminAction } from './errors.js';
import { readBody, requireSomeField } from './input.js';

const CREATE = { name: { type: 'string', required: true }, description: { type: 'string' }, scopes: { type: 'strings' } } as const;
const UPDATE = { description: { type: 'string' }, scopes: { type: 'strings' } } as const;

/**
 * Roles: named sets of scopes that users hold. The rules are src/auth/roles.ts, the same the CLI
 * applies. A role's scope change reaches its users at their next login or refresh.
 */
export function rolesRouter(deps: Deps): Router {
  const router = Router();

  router.post('/roles', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const role = await asAdminAction('role', () => createRole(deps.db, body));
    auditAdmin(deps, req, res, 'role_changed', { role: role.name, created: true, scopes: role.scopes });
    res.status(201).location(`/admin/roles/${role.name}`).json(role);
  });

  // Roles are few (they are defined by people, not created per user): no paging.
  router.get('/roles', async (_req, res) => {
    res.json({ items: await listRoles(deps.db) });
  });
  router.all('/roles', methodNotAllowed('GET', 'HEAD', 'POST'));

  router.get('/roles/:name', async (req, res) => {
    res.json(await asAdminAction('role', () => requireRole(deps.db, req.params['name']!)));
  });

  router.patch('/roles/:name', async (req, res) => {
    const body = readBody(req.body, UPDATE);
    requireSomeField(body);
    // A role may be how the acting admin holds the admin scope: a change that takes it from them is refused.
    const role = await asAdminAction('role', () => keepAdminAccess(deps.db, actingAdmin(res), (db) => updateRole(db, req.params['name']!, body)));
    auditAdmin(deps, req, res, 'role_changed', { role: role.name, updated: true, ...body });
    res.json(role);
  });

  router.delete('/roles/:name', async (req, res) => {
    const name = req.params['name']!;
    await asAdminAction('role', () => keepAdminAccess(deps.db, actingAdmin(res), (db) => removeRole(db, name)));
    auditAdmin(deps, req, res, 'role_changed', { role: name, deleted: true });
    res.status(204).end();
  });
  router.all('/roles/:name', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  return router;
}
