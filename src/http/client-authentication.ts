import type { Request, Response } from 'express';
import type { Deps } from '../deps.js';
import { type AuthenticatedClient, authenticateClient } from '../oauth/client-auth.js';
import { OAuthError } from '../oauth/errors.js';
import type { Params } from './form.js';

/**
 * RFC 6749 §2.3 client authentication under the client layers (src/limits/rate-limits.ts): a
 * source whose client authentications keep failing is refused before the next lookup
 * (client_auth), and the request of an authenticated client counts against that client's own
 * limit (client), unless `countRequest` is false (a login: the login layers count those).
 */
export async function authenticateRequestClient(
  deps: Deps,
  req: Request,
  res: Response,
  params: Params,
  { countRequest = true }: { countRequest?: boolean } = {},
): Promise<AuthenticatedClient> {
  const ip = req.ip ?? '';
  await deps.limits.clients.checkSource(ip);
  let authenticated: AuthenticatedClient;
  try {
    authenticated = await authenticateClient(deps.clients, {
      authorization: req.get('authorization'),
      clientId: params['client_id'],
      clientSecret: params['client_secret'],
    });
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_client') await deps.limits.clients.sourceFailed(ip);
    throw error;
  }
  if (countRequest) await deps.limits.clients.countRequest(req, res, authenticated.client);
  return authenticated;
}
