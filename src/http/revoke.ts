import { Router } from 'express';
import { audit } from '../audit.js';
import { findFamilyByTokenHash, revokeFamily } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';
import { authenticateClient } from '../oauth/client-auth.js';
import { invalidRequest } from '../oauth/errors.js';
import { hashRefreshToken, isWellFormedRefreshToken } from '../refresh/tokens.js';
import { methodNotAllowed } from './errors.js';
import { parseForm, readParams } from './form.js';
import { noStore, rejectQueryParameters, requireForm } from './token-endpoint.js';

/**
 * POST /revoke (RFC 7009). Revoking a refresh token ends its whole family: the user is logged out
 * of that session. Access tokens are self-contained JWTs that expire within ACCESS_TOKEN_TTL and
 * cannot be recalled one by one; ending their family (`sid`) stops them being renewed.
 * An unknown token, an access token, or another client's token answers 200 and changes nothing
 * (§2.2), so the endpoint tells nobody which tokens exist. `token_type_hint` only orders the search
 * (§2.1), and refresh tokens are the only kind looked up, so every hint leads to the same place.
 */
export function revokeRouter(deps: Deps): Router {
  const router = Router();
  router.post('/revoke', noStore, requireForm, parseForm, ...deps.limits.client, async (req, res) => {
    rejectQueryParameters(req);
    const params = readParams(req.body);
    const { client } = await authenticateClient(deps.db, {
      authorization: req.get('authorization'),
      clientId: params['client_id'],
      clientSecret: params['client_secret'],
    });
    const token = params['token'];
    if (token === undefined || token === '') throw invalidRequest('token is required');

    if (isWellFormedRefreshToken(token)) {
      const family = await findFamilyByTokenHash(deps.db, hashRefreshToken(token));
      if (family !== undefined && family.client_id === client.id) {
        if (await revokeFamily(deps.db, family.id, 'logout', new Date(deps.clock.now()))) {
          audit(deps.log, 'refresh_family_revoked', { reason: 'logout', family_id: family.id, user_id: family.user_id, client_id: client.id, ip: req.ip });
        }
      }
    }
    res.status(200).end();
  });
  router.all('/revoke', methodNotAllowed('POST'));
  return router;
}
