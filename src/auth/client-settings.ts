import { MAX_CLIENT_RATE_LIMIT } from '../config.js';
import type { ClientType, GrantType, TokenClaimMap } from '../db/schema.js';
import { hasControlCharacters } from './passwords.js';
import { checkRedirectUris } from './redirect-uris.js';
import { checkScopeList } from './scopes.js';
import { checkTokenClaims, TokenClaimsError } from './token-claims.js';

/**
 * `invalid_client_metadata` (the RFC 7591 §3.2.2 name): the input is malformed, a usage error in
 * the CLI and a 400 over HTTP. `no_secret`: a public client has no secret to rotate.
 */
export type ClientErrorCode = 'invalid_client_metadata' | 'weak_secret' | 'client_exists' | 'not_found' | 'no_secret';

/** A rule about clients was broken; the message is safe to show to whoever asked. */
export class ClientError extends Error {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

const GRANT_TYPES: readonly GrantType[] = ['password', 'refresh_token', 'client_credentials', 'authorization_code'];
const MAX_NAME_LENGTH = 200;
/** An `aud` value (RFC 7519 §4.1.3: a StringOrURI); no spaces, so it cannot be mistaken for a list. */
const AUDIENCE = /^[\x21-\x7e]{1,255}$/;

/** Requests per CLIENT_RATE_WINDOW, or null for none of its own: what is wrong with it, or undefined. */
export function checkRateLimit(rateLimit: number | null): string | undefined {
  const valid = rateLimit === null || (Number.isSafeInteger(rateLimit) && rateLimit >= 1 && rateLimit <= MAX_CLIENT_RATE_LIMIT);
  return valid ? undefined : `a rate limit is a whole number of requests from 1 to ${MAX_CLIENT_RATE_LIMIT}, or none`;
}

export const invalid = (message: string) => new ClientError('invalid_client_metadata', message);

export interface CheckedSettings {
  readonly name: string;
  readonly grant_types: GrantType[];
  readonly allowed_scopes: string[];
  readonly default_scopes: string[];
  readonly audience: string[];
  readonly rate_limit: number | null;
  readonly roles_claim: boolean;
  /** As JSON text, as the column is written. */
  readonly token_claims: string;
  readonly redirect_uris: string[];
  readonly post_logout_redirect_uris: string[];
}

/** The rules every client's settings follow, new or changed (src/auth/client-registry.ts). */
export function checkSettings(
  type: ClientType,
  settings: {
    name: string;
    grantTypes: readonly string[];
    scopes: readonly string[];
    defaultScopes: readonly string[];
    audience: readonly string[];
    rateLimit: number | null;
    rolesClaim: boolean;
    tokenClaims: unknown;
    redirectUris: readonly string[];
    postLogoutRedirectUris: readonly string[];
  },
): CheckedSettings {
  const grantTypes = unique(settings.grantTypes);
  const unknown = grantTypes.filter((grant) => !GRANT_TYPES.includes(grant as GrantType));
  if (unknown.length > 0) throw invalid(`unknown grant type: ${unknown.join(' ')} (known: ${GRANT_TYPES.join(', ')})`);
  if (grantTypes.length === 0) throw invalid('a client needs at least one grant type');
  if (type === 'public' && grantTypes.includes('client_credentials')) {
    throw invalid('a public client cannot use client_credentials: it has no secret');
  }
  const allowed = unique(settings.scopes);
  const defaults = unique(settings.defaultScopes);
  const problem = checkScopeList(unique([...allowed, ...defaults]));
  if (problem !== undefined) throw invalid(problem);
  const outside = defaults.filter((scope) => !allowed.includes(scope));
  if (outside.length > 0) throw invalid(`default scopes must be allowed scopes too: ${outside.join(' ')}`);
  const audience = unique(settings.audience);
  if (!audience.every((aud) => AUDIENCE.test(aud))) throw invalid('an audience is 1 to 255 printable characters without spaces');
  if (settings.name.length > MAX_NAME_LENGTH || hasControlCharacters(settings.name)) {
    throw invalid(`a client name has at most ${MAX_NAME_LENGTH} characters and no control characters`);
  }
  const rateLimit = settings.rateLimit;
  const badRateLimit = checkRateLimit(rateLimit);
  if (badRateLimit !== undefined) throw invalid(badRateLimit);
  let tokenClaims: TokenClaimMap;
  try {
    tokenClaims = checkTokenClaims(settings.tokenClaims);
  } catch (error) {
    if (error instanceof TokenClaimsError) throw invalid(error.message);
    throw error;
  }
  const redirectUris = unique(settings.redirectUris);
  const postLogoutRedirectUris = unique(settings.postLogoutRedirectUris);
  const badUri = checkRedirectUris(redirectUris) ?? checkRedirectUris(postLogoutRedirectUris);
  if (badUri !== undefined) throw invalid(badUri);
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
    throw invalid('the authorization_code grant needs at least one redirect URI');
  }
  return {
    name: settings.name,
    grant_types: grantTypes as GrantType[],
    allowed_scopes: allowed,
    default_scopes: defaults,
    audience,
    rate_limit: rateLimit,
    roles_claim: settings.rolesClaim,
    token_claims: JSON.stringify(tokenClaims),
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
  };
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

