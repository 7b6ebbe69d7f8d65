import { Router } from 'express';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { supportedGrantTypes } from '../grants/index.js';
import { SIGNING_ALGORITHM } from '../keys/key-store.js';
import { methodNotAllowed } from './errors.js';

/** RFC 8414 §2 metadata; `issuer` is exactly ISSUER, so `iss` checks in clients match byte for byte. */
export function discoveryMetadata(config: Config): Record<string, unknown> {
  const at = (path: string) => `${config.issuer}${path}`;
  return {
    issuer: config.issuer,
    token_endpoint: at('/token'),
    jwks_uri: at('/.well-known/jwks.json'),
    userinfo_endpoint: at('/userinfo'),
    grant_types_supported: supportedGrantTypes(),
    // No authorization endpoint (yet): no browser response types are offered.
    response_types_supported: [],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    // RFC 9068 access tokens.
    access_token_signing_alg_values_supported: [SIGNING_ALGORITHM],
    service_documentation: at('/openapi.yaml'),
  };
}

export function wellKnownRouter(deps: Deps): Router {
  const router = Router();
  // Computed once: the metadata depends only on configuration.
  const metadata = JSON.stringify(discoveryMetadata(deps.config));
  const serveMetadata = (_req: unknown, res: import('express').Response) => {
    res.set('Cache-Control', 'public, max-age=3600').type('application/json').send(metadata);
  };
  router.get('/.well-known/oauth-authorization-server', serveMetadata);
  router.get('/.well-known/openid-configuration', serveMetadata);

  // RFC 7517. Body and ETag are computed when the key set changes, not per request.
  router.get('/.well-known/jwks.json', (req, res) => {
    const { body, etag } = deps.keys.current().jwks;
    res.set('Cache-Control', `public, max-age=${deps.config.jwksMaxAge}`);
    res.set('ETag', etag);
    if (req.get('if-none-match')?.split(',').some((tag) => tag.trim() === etag)) {
      res.status(304).end();
      return;
    }
    res.type('application/json').send(body);
  });
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/.well-known/jwks.json']) {
    router.all(path, methodNotAllowed('GET', 'HEAD'));
  }
  return router;
}
