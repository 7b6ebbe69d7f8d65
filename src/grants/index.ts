import type { GrantType } from '../db/schema.js';
import type { Grant } from './grant.js';
import { clientCredentialsGrant } from './client-credentials.js';
import { passwordGrant } from './password.js';
import { refreshTokenGrant } from './refresh-token.js';

/** The grants the token endpoint serves. Adding one is a module plus an entry here. */
export const grants: ReadonlyMap<string, Grant> = new Map<GrantType, Grant>([
  [passwordGrant.grantType, passwordGrant],
  [refreshTokenGrant.grantType, refreshTokenGrant],
  [clientCredentialsGrant.grantType, clientCredentialsGrant],
]);

export const supportedGrantTypes = (): string[] => [...grants.keys()];
