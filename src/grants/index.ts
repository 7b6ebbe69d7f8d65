import type { GrantType } from '../db/schema.js';
import { inChildSpan } from '../telemetry/spans.js';
import type { Grant } from './grant.js';
import { authorizationCodeGrant } from './authorization-code.js';
import { clientCredentialsGrant } from './client-credentials.js';
import { passwordGrant } from './password.js';
import { refreshTokenGrant } from './refresh-token.js';

/** The grants the token endpoint serves. Adding one is a module plus an entry here. */
export const grants: ReadonlyMap<string, Grant> = new Map<GrantType, Grant>(
  [passwordGrant, refreshTokenGrant, clientCredentialsGrant, authorizationCodeGrant].map((grant) => [grant.grantType, traced(grant)]),
);

/** The grant's work in a span of its own, `grant password` (README, Tracing), when tracing is on. */
function traced(grant: Grant): Grant {
  const name = `grant ${grant.grantType}`;
  const handle = grant.handle.bind(grant);
  return { grantType: grant.grantType, handle: (request, deps) => inChildSpan(name, handle, request, deps) };
}

export const supportedGrantTypes = (): string[] => [...grants.keys()];
