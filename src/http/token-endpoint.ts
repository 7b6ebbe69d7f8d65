import { type Request, type Response, Router } from 'express';
import type { Deps } from '../deps.js';
import { grants } from '../grants/index.js';
import { invalidRequest, OAuthError } from '../oauth/errors.js';
import { authenticateRequestClient } from './client-authentication.js';
import { methodNotAllowed } from './errors.js';
import { countTokenRequests } from './metrics.js';
import { requestIdOf } from './request-log.js';
import { noStore, type Params, parseForm, parseJson, readParams, rejectQueryParameters, requireForm, requireFormOrJson } from './form.js';

/**
 * POST /token (RFC 6749 §3.2). The endpoint is a short list of steps: no-store headers, form-only
 * body, the per-IP login layer, no parameters in the URL, no repeats, client authentication (under
 * the client layers), then the grant from the map.
 */
export function tokenRouter(deps: Deps): Router {
  const router = Router();
  // Counted first, so that a refusal by any later step is counted too.
  const countByBody = countTokenRequests(deps.metrics, (req) => (req.body as Record<string, unknown> | undefined)?.['grant_type']);
  router.post('/token', countByBody, noStore, requireForm, parseForm, ...deps.limits.token, handleTokenRequest(deps));
  router.all('/token', methodNotAllowed('POST'));
  // For gateways: the refresh grant with a form or JSON body, the same client authentication and response.
  const countAsRefresh = countTokenRequests(deps.metrics, () => 'refresh_token');
  router.post('/refresh', countAsRefresh, noStore, requireFormOrJson, parseForm, parseJson, handleTokenRequest(deps, readRefreshBody));
  router.all('/refresh', methodNotAllowed('POST'));
  return router;
}

/** /refresh implies grant_type=refresh_token; naming another grant there is a mistake worth reporting. */
function readRefreshBody(req: Request): Params {
  const params = readParams(req.body);
  const grantType = params['grant_type'];
  if (grantType !== undefined && grantType.trim() !== '' && grantType !== 'refresh_token') {
    throw new OAuthError('unsupported_grant_type', 'this endpoint serves grant_type=refresh_token only');
  }
  return { ...params, grant_type: 'refresh_token' };
}

export function handleTokenRequest(deps: Deps, readBody: (req: Request) => Params = (req) => readParams(req.body)) {
  return async (req: Request, res: Response): Promise<void> => {
    rejectQueryParameters(req);
    const params = readBody(req);
    const grantType = params['grant_type'];
    if (grantType === undefined || grantType.trim() === '') throw invalidRequest('grant_type is required');

    // A login is counted by the login layers, not against its client's request budget.
    const { client } = await authenticateRequestClient(deps, req, res, params, { countRequest: grantType !== 'password' });
    const grant = grants.get(grantType);
    if (grant === undefined) {
      throw new OAuthError('unsupported_grant_type', 'this grant_type is not supported');
    }
    if (!client.grant_types.includes(grant.grantType)) {
      throw new OAuthError('unauthorized_client', 'this client may not use this grant_type');
    }
    const response = await grant.handle({ params, client, ip: req.ip ?? '', requestId: requestIdOf(res) }, deps);
    res.status(200).json(response);
  };
}
