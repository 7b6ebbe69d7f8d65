import { Router } from 'express';
import { keepAdminAccess } from '../../auth/admin-access.js';
import { clientView, registerClient, removeClient, requireClient, rotateClientSecret, updateClientSettings } from '../../auth/client-registry.js';
import { CURSOR_KEY_PURPOSE, cursorPage } from '../../cursor.js';
import { pageClients } from '../../db/clients.js';
import { invalidRequest } from '../../oauth/errors.js';
import type { Deps } from '../../deps.js';
import { methodNotAllowed } from '../errors.js';
import { actingAdmin, adminChange } from './auth.js';
import { asAdminAction } from './errors.js';
import { type Body, readBody, readCursor, readLimit, readQuery, requireSomeField } from './input.js';


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
  const cursorKeys = deps.keyRing.derive(CURSOR_KEY_PURPOSE);

  router.post('/clients', async (req, res) => {
    const body = readBody(req.body, CREATE);
    const input = { ...settingsFrom(body), id: body.id, type: body.type };
    const { client, generatedSecret } = await asAdminAction('client', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => registerClient(trx, input, now()),
        ({ client: created }) => ({
          event: 'client_created',
          fields: {
            client_id: created.id,
            type: created.type,
            grant_types: created.grant_types,
            scopes: created.allowed_scopes,
            default_scopes: created.default_scopes,
            audience: created.audience,
            rate_limit: created.rate_limit,
            roles_claim: created.roles_claim,
            token_claims: Object.keys(created.token_claims),
            redirect_uris: created.redirect_uris,
            post_logout_redirect_uris: created.post_logout_redirect_uris,
          },
        }),
      ),
    );
    res
      .status(201)
      .location(`/admin/clients/${client.id}`)
      .json({ ...clientView(client), ...(generatedSecret ? { client_secret: generatedSecret } : {}) });
  });

  router.get('/clients', async (req, res) => {
    const query = readQuery(req, ['limit', 'cursor', 'grant_type', 'type']);
    const limit = readLimit(query['limit']);
    const after = readCursor(cursorKeys, 'clients', query['cursor'])?.[0];
    const grantType = query['grant_type'];
    // Checked for shape only: a grant no client has (yet) lists nothing.
    if (grantType !== undefined && !/^[a-z_]{1,64}$/.test(grantType)) throw invalidRequest('grant_type must be a grant type such as client_credentials');
    const type = query['type'];
    if (type !== undefined && type !== 'confidential' && type !== 'public') throw invalidRequest('type must be confidential or public');
    const rows = await pageClients(deps.db, { limit: limit + 1, after, grantType, type });
    const { items, next_cursor } = cursorPage(cursorKeys, 'clients', rows, limit, (client) => [client.id]);
    res.json({ items: items.map(clientView), next_cursor });
  });
  router.all('/clients', methodNotAllowed('GET', 'HEAD', 'POST'));

  router.get('/clients/:id', async (req, res) => {
    res.json(clientView(await asAdminAction('client', () => requireClient(deps.db, req.params['id']!))));
  });

  router.patch('/clients/:id', async (req, res) => {
    const body = readBody(req.body, SETTINGS);
    requireSomeField(body);
    // The client of the acting admin's own token must keep issuing them the admin scope.
    // The new values, not only the names: granting a client `admin` or the password grant must show.
    const client = await asAdminAction('client', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => updateClientSettings(db, req.params['id']!, settingsFrom(body), now())),
        (updated) => ({ event: 'client_updated', fields: { client_id: updated.id, changed: Object.keys(body).sort(), now: clientView(updated) } }),
      ),
    );
    deps.clients.forget(client.id);
    res.json(clientView(client));
  });

  router.delete('/clients/:id', async (req, res) => {
    const id = req.params['id']!;
    await asAdminAction('client', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => keepAdminAccess(trx, actingAdmin(res), (db) => removeClient(db, id)),
        () => ({ event: 'client_deleted', fields: { client_id: id } }),
      ),
    );
    deps.clients.forget(id);
    res.status(204).end();
  });
  router.all('/clients/:id', methodNotAllowed('GET', 'HEAD', 'PATCH', 'DELETE'));

  router.post('/clients/:id/secret', async (req, res) => {
    readBody(req.body, {});
    const id = req.params['id']!;
    const secret = await asAdminAction('client', () =>
      adminChange(
        deps,
        req,
        res,
        (trx) => rotateClientSecret(trx, id, now()),
        () => ({ event: 'client_secret_rotated', fields: { client_id: id } }),
      ),
    );
    deps.clients.forget(id);
    res.json({ id, client_secret: secret });
  });
  router.all('/clients/:id/secret', methodNotAllowed('POST'));

  return router;
}
