import { Router } from 'express';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { clientView, registerClient, removeClient, requireClient, rotateClientSecret, updateClientSettings } from '../../auth/client-registry.js';
import { listClients } from '../../db/clients.js';
import type { Deps } from '../../deps.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, auditAdmin } from './auth.js';
import { asAdminAction } from './errors.js';
import { type Body, readBody, requireSomeField } from './input.js';


const SETTINGS = {
  name: { type: 'string' },
  grant_types: { type: 'strings' },
  scopes: { type: 'strings' },
  default_scopes: { type: 'strings' },
  audience: { type: 'strings' },
  rate_limit: { type: 'count' },
  roles_claim: { type: 'boolean' },
  token_claims: { type: 'object' },
  redirect_uris: { type: 'strings' },
  post_logout_redirect_uris: { type: 'strings' },
} as const;
const CREATE = { ...SETTINGS, id: { type: 'string' }, type: { type: 'string', oneOf: ['confidential', 'public'] } } as const;

const settingsFrom = (body: Body<typeof SETTINGS>) => ({
  name: body.name,
  grantTypes: body.grant_types,
  scopes: body.scopes,
  defaultScopes: body.default_scopes,
  audience: body.audience,
  rateLimit: body.rate_limit,
  rolesClaim: body.roles_claim,
  tokenClaims: body.token_claims,
  redirectUris: body.redirect_uris,
  postLogoutRedirectUris: body.post_logout_redirect_uris,
});

/**
 * Clients: register, list, get, change settings (id and type are fixed), delete, rotate the
 * secret. The rules are src/auth/client-registry.ts, the same the CLI applies. A confidential
 * client's secret is generated here and shown once, in the response that made it; only its hash
 * is kept.
 */
export function clientsRouter(deps: Deps): Router {
  const router = Router();
  const now = () => new Date(deps.clock.now());

  router.post('/clients', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const input = { ...settingsFrom(body), id: body.id, type: body.type };
    const { client, generatedSecret } = await asAdminAction('client', () => registerClient(deps.db, input, now()));
    auditAdmin(deps, req, res, 'client_created', {
      client_id: client.id,
      type: client.type,
      grant_types: client.grant_types,
      scopes: client.allowed_scopes,
      default_scopes: client.default_scopes,
      audience: client.audience,
      rate_limit: client.rate_limit,
      roles_claim: client.roles_claim,
      token_claims: Object.keys(client.token_claims),
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris,
    });
    res
      .status(201)
      .location(`/admin/clients/${client.id}`)
      .json({ ...clientView(client), ...(generatedSecret ? { client_secret: generatedSecret } : {}) });
  });

  // Clients are few (one per gateway or service): no paging.
  router.get('/clients', async (_req, res) => {
    res.json({ items: (await listClients(deps.db)).map(clientView) });
  });
  router.all('/clients', methodNotAllowed('GET', 'HEAD', 'POST'));

  router.get('/clients/:id', async (req, res) => {
    res.json(clientView(await asAdminAction('client', () => requireClient(deps.db, req.params['id']!))));
  });

  router.patch('/clients/:id', async (req, res) => {
    const body = readBody(req.body, SETTINGS);
    requireSomeField(body);
    // The client of the acting admin's own token must keep issuing them the admin scope.
    const client = await asAdminAction('client', () =>
      keepAdminAccess(deps.db, actingAdmin(res), (db) => updateClientSettings(db, req.params['id']!, settingsFrom(body), now())),
    );
    deps.clients.forget(client.id);
    // The new values, not only the names: granting a client `admin` or the password grant must show.
    auditAdmin(deps, req, res, 'client_updated', { client_id: client.id, changed: Object.keys(body).sort(), now: clientView(client) });
    res.json(clientView(client));
  });

  router.delete('/clients/:id', async (req, res) => {
    const id = req.params['id']!;
    await asAdminAction('client', () => keepAdminAccess(deps.db, actingAdmin(res), (db) => removeClient(db, id)));
    deps.clients.forget(id);
    auditAdmin(deps, req, res, 'client_deleted', { client_id: id });
    res.status(204).end();
  });
  router.all('/clients/:id', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  router.post('/clients/:id/secret', async (req, res) => {
    readBody(req.body, {});
    const id = req.params['id']!;
    const secret = await asAdminAction('client', () => rotateClientSecret(deps.db, id, now()));
    deps.clients.forget(id);
    auditAdmin(deps, req, res, 'client_secret_rotated', { client_id: id });
    res.json({ id, client_secret: secret });
  });
  router.all('/clients/:id/secret', methodNotAllowed('POST'));

  return router;
}
