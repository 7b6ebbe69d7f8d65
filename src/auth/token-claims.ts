import type { Attributes, Client, TokenClaimMap } from '../db/schema.js';
import { isPlainObject } from './profile.js';

// Claims a client asks to find in its users' access tokens (DESIGN.md, "Users, claims and audit"):
// the user's role names as `roles` (RFC 9068 §2.2.3.1) and claims taken from user attributes,
// `{"tenant": "attributes.tenant"}`. Pure: the values come from the caller, read when the token is
// issued, so a refresh carries them as they are then.

/**
 * Names no mapping may take: the JWT registered claims (RFC 7519 §4.1), those RFC 9068 §2.2 and
 * Tessera give meaning to in an access token (client_id, scope, auth_time, acr, amr, sid), the
 * `roles`, `groups` and `entitlements` of RFC 9068 §2.2.3.1 (only Tessera's own `roles` setting
 * writes `roles`; groups and entitlements are kept for the same kind of use), token exchange's
 * act/may_act (RFC 8693 §4.1, §4.4), proof of possession's cnf (RFC 7800), the ID-token claims of
 * OIDC Core §2 (azp, nonce, at_hash, c_hash, s_hash), `typ`, and the profile claims Tessera itself
 * asserts (`email`, `email_verified`, `name`, `preferred_username`, `username`, `updated_at`): a
 * verifier must be able to trust each of these to mean what its standard says, never what an
 * attribute an operator (or a self-registered user's data) happened to hold.
 */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti',
  'client_id', 'scope', 'scp', 'auth_time', 'acr', 'amr', 'sid',
  'roles', 'groups', 'entitlements',
  'act', 'may_act', 'cnf', 'azp', 'nonce', 'at_hash', 'c_hash', 's_hash', 'typ',
  'email', 'email_verified', 'name', 'preferred_username', 'username', 'updated_at',
]);

/** At most this many claims from attributes per client. */
export const MAX_MAPPED_CLAIMS = 20;
/** A claim name: a short name or a collision-resistant one (RFC 7519 §4.2: a URI such as https://example.com/tenant). */
const CLAIM_NAME = /^[A-Za-z][A-Za-z0-9_.:/-]{0,63}$/;
/** `attributes.<name>` or `attributes.<name>.<name>`, with attribute names as src/auth/profile.ts allows them. */
const PATH = /^attributes\.[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?$/;
/**
 * What the claims of this module may add to an access token, as JSON (UTF-8 bytes). Mapped paths
 * never overlap, so their values are disjoint parts of the user's attributes (at most 4 KiB); with
 * 20 names of at most 64 characters and the roles, the budget keeps a signed token under the 8 KiB
 * that verifiers (packages/verify, Tessera itself) and common proxies accept: see README.
 */
export const MAX_CUSTOM_CLAIMS_BYTES = 4096;

export class TokenClaimsError extends Error {}

/** A client's `token_claims`, checked: what is wrong with it, or the map. */
export function checkTokenClaims(input: unknown): TokenClaimMap {
  if (!isPlainObject(input)) throw new TokenClaimsError('token_claims must be a JSON object of claim names to attribute paths');
  const entries = Object.entries(input);
  if (entries.length > MAX_MAPPED_CLAIMS) throw new TokenClaimsError(`token_claims maps at most ${MAX_MAPPED_CLAIMS} claims`);
  for (const [name, path] of entries) {
    if (!CLAIM_NAME.test(name)) {
      throw new TokenClaimsError('a claim name has 1 to 64 letters, digits or _ . : / - and starts with a letter');
    }
    // In any case: claim names are case-sensitive (RFC 7519 §4), but many verifiers decode them into
    // fields case-insensitively (Go's encoding/json), where a mapped `Roles` would stand for `roles`.
    if (RESERVED_CLAIMS.has(name.toLowerCase())) throw new TokenClaimsError(`the claim ${name} is a registered or protocol claim and cannot be mapped`);
    if (typeof path !== 'string' || !PATH.test(path)) {
      throw new TokenClaimsError(`the claim ${name} must map to attributes.<name> or attributes.<name>.<name>`);
    }
  }
  // Overlapping paths (attributes.org and attributes.org.id) would put the same data in a token twice.
  const paths = entries.map(([, path]) => path as string);
  for (const path of paths) {
    if (paths.some((other) => other !== path && other.startsWith(`${path}.`)) || paths.indexOf(path) !== paths.lastIndexOf(path)) {
      throw new TokenClaimsError(`token_claims maps ${path} more than once (or a part of it)`);
    }
  }
  return Object.fromEntries(entries) as TokenClaimMap;
}

/** Whether tokens for this client carry claims about the user: only then are roles and attributes read. */
export function wantsUserClaims(client: Pick<Client, 'roles_claim' | 'token_claims'>): boolean {
  return client.roles_claim || Object.keys(client.token_claims).length > 0;
}

/** What the user claims come from, as read when the token is issued. */
export interface ClaimSource {
  readonly roles: readonly string[];
  readonly attributes: Attributes;
}

/**
 * The user claims for a token of this client, and the names of those left out because the budget
 * (MAX_CUSTOM_CLAIMS_BYTES) was spent: `roles` first, then the mapped claims in name order. An
 * attribute the user does not have gives no claim.
 */
export function userClaims(
  client: Pick<Client, 'roles_claim' | 'token_claims'>,
  source: ClaimSource,
): { claims: Record<string, unknown>; omitted: string[] } {
  const claims: [string, unknown][] = [];
  const omitted: string[] = [];
  let bytes = 0;
  const add = (name: string, value: unknown): void => {
    // `"name":value,` as it will stand in the payload.
    const size = Buffer.byteLength(JSON.stringify({ [name]: value })) - 1;
    if (bytes + size > MAX_CUSTOM_CLAIMS_BYTES) {
      omitted.push(name);
      return;
    }
    bytes += size;
    claims.push([name, value]);
  };
  if (client.roles_claim) add('roles', [...source.roles]);
  for (const name of Object.keys(client.token_claims).sort()) {
    const value = readPath(source.attributes, client.token_claims[name]!);
    if (value !== undefined) add(name, value);
  }
  return { claims: Object.fromEntries(claims), omitted };
}

/** `attributes.a.b` in the attributes, by own members only (never `__proto__` or `constructor`). */
function readPath(attributes: Attributes, path: string): unknown {
  let value: unknown = attributes;
  for (const name of path.split('.').slice(1)) {
    if (!isPlainObject(value) || !Object.hasOwn(value, name)) return undefined;
    value = value[name];
  }
  return value;
}
