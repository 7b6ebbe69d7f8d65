import { Router } from 'express';
import { auditedChange } from '../audit/writer.js';
import { findTokenFamily, revokeFamily } from '../db/refresh-families.js';
import type { Deps } from '../deps.js';
import { invalidRequest } from '../oauth/errors.js';
import { hashRefreshToken, isWellFormedRefreshToken } from '../refresh/tokens.js';
import { verifyAccessToken } from '../tokens/access-token.js';
import { authenticateRequestClient } from './client-authentication.js';
import { methodNotAllowed } from './errors.js';
import { auditContextOf } from './request-log.js';
import { noStore, parseForm, readParams, rejectQueryParameters, requireForm } from './form.js';

/**
 * POST /revoke (RFC 7009). Revoking a refresh token ends its whole family: the user is logged out
 * of that session. Revoking an access token ends the family it belongs to (its `sid`) as well:
 * the session ends, Tessera's own endpoints refuse its access tokens at once, and downstream
 * verifiers stop seeing new ones (they cannot recall a self-contained JWT before its `exp`).
 * An unknown token, or another client's token, answers 200 and changes nothing (§2.2), so the
 * endpoint tells nobody which tokens exist. `token_type_hint` only orders the search (§2.1).
 */
export function revokeRouter(deps: Deps): Router {
  const router = Router();
  router.post('/revoke', noStore, requireForm, parseForm, async (req, res) => {
    rejectQueryParameters(req);
    const params = readParams(req.body);
    const { client } = await authenticateRequestClient(deps, req, res, params);
    const token = params['token'];
    if (token === undefined || token === '') throw invalidRequest('token is required');

    const family = await findFamilyOf(deps, token, client.id);
    if (family !== undefined) {
      const fields = { reason: 'logout', family_id: family.id, user_id: family.userId, client_id: client.id, ip: req.ip };
      await auditedChange(
        deps,
        auditContextOf(req, res, { type: 'client', id: client.id }),
        (trx) => revokeFamily(trx, family.id, 'logout', new Date(deps.clock.now())),
        (revoked) => (revoked ? { event: 'refresh_family_revoked', fields } : undefined),
      );
    }
    res.status(200).end();
  });
  router.all('/revoke', methodNotAllowed('POST'));
  return router;
}

/** The family a token of this client belongs to: a refresh token by its hash, an access token by its `sid`. */
async function findFamilyOf(deps: Deps, token: string, clientId: string): Promise<{ id: string; userId: string } | undefined> {
  if (isWellFormedRefreshToken(token)) {
    const family = await findTokenFamily(deps.db, hashRefreshToken(token));
    return family?.client_id === clientId ? { id: family.id, userId: family.user_id } : undefined;
  }
  const claims = await verifyAccessToken(deps, token).catch(() => undefined);
  return claims?.client_id === clientId && claims.sid !== undefined ? { id: claims.sid, userId: claims.sub } : undefined;
}
