import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Router } from 'express';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { supportedGrantTypes } from '../grants/index.js';
import { SIGNING_ALGORITHM } from '../keys/key-store.js';
import { OAuthError } from '../oauth/errors.js';
import { findPackageRoot } from '../package-root.js';
import { methodNotAllowed } from './errors.js';

/** ID token claims (src/tokens/id-token.ts) and /userinfo's standard claims (src/http/userinfo.ts). */
const CLAIMS_SUPPORTED = ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'sid', 'at_hash', 'preferred_username', 'name', 'email', 'email_verified', 'updated_at'];
/** OIDC Core §5.4: `profile` and `email` choose /userinfo's claims; a deployment's own scopes are its own. */
const SCOPES_SUPPORTED = ['openid', 'profile', 'email'];

/**
 * RFC 8414 §2 and OpenID Connect Discovery 1.0 §3 metadata, one document at both addresses;
 * `issuer` is exactly ISSUER, so `iss` checks in clients match byte for byte.
 */
export function discoveryMetadata(config: Config): Record<string, unknown> {
  const at = (path: string) => `${config.issuer}${path}`;
  return {
    issuer: config.issuer,
    authorization_endpoint: at('/authorize'),
    token_endpoint: at('/token'),
    jwks_uri: at('/.well-known/jwks.json'),
    userinfo_endpoint: at('/userinfo'),
    revocation_endpoint: at('/revoke'),
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    introspection_endpoint: at('/introspect'),
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    end_session_endpoint: at('/logout'),
    grant_types_supported: supportedGrantTypes(),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    // RFC 7636, RFC 9700 §2.1.1: S256 only, required of every client.
    code_challenge_methods_supported: ['S256'],
    // RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: true,
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [SIGNING_ALGORITHM],
    scopes_supported: SCOPES_SUPPORTED,
    claims_supported: CLAIMS_SUPPORTED,
    prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
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
    if (matchesEtag(req.get('if-none-match'), etag)) {
      res.status(304).end();
      return;
    }
    res.type('application/json').send(body);
  });
  // The API description, read once.
  const openapiPath = join(findPackageRoot(), 'openapi.yaml');
  const openapi = existsSync(openapiPath) ? readFileSync(openapiPath, 'utf8') : undefined;
  router.get('/openapi.yaml', (_req, res) => {
    if (openapi === undefined) throw new OAuthError('invalid_request', 'there is no such endpoint', { status: 404 });
    res.set('Cache-Control', 'public, max-age=3600').type('application/yaml; charset=utf-8').send(openapi);
  });

  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/.well-known/jwks.json', '/openapi.yaml']) {
    router.all(path, methodNotAllowed('GET', 'HEAD'));
  }
  return router;
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and `*` matches any current representation. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const trimmed = tag.trim();
    return trimmed === '*' || trimmed.replace(/^W\//, '') === etag;
  });
}
