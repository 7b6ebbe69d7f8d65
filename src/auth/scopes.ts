import { OAuthError } from '../oauth/errors.js';

/**
 * OpenID Connect's own scope: it asks for an ID token about whoever signed in, which every user may
 * have; a client must still be allowed it. Other scopes need the user to hold them too.
 */
export const OPENID_SCOPE = 'openid';

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by single spaces. */
export function isScopeToken(text: string): boolean {
  return /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(text);
}

/**
 * Parses a `scope` parameter. Absent or empty: undefined (the client's default applies).
 * Malformed (double spaces, quotes, control or non-ASCII characters): invalid_scope.
 */
export function parseScope(text: string | undefined): string[] | undefined {
  if (text === undefined || text === '') return undefined;
  const tokens = text.split(' ');
  if (!tokens.every(isScopeToken)) throw new OAuthError('invalid_scope', 'the scope parameter is malformed');
  return [...new Set(tokens)];
}

/**
 * Scopes named by an operator (CLI, admin API) for a user, role or client: each must be a
 * scope-token. Returns what is wrong, or undefined (like checkNewPassword).
 */
export function checkScopeList(scopes: readonly string[]): string | undefined {
  const bad = scopes.filter((scope) => !isScopeToken(scope));
  return bad.length > 0 ? `not a valid scope: ${bad.join(' ')}` : undefined;
}

export function formatScope(scopes: readonly string[]): string {
  return scopes.join(' ');
}

export interface ScopeRequest {
  readonly requested: readonly string[] | undefined;
  readonly clientDefault: readonly string[];
  readonly clientAllowed: readonly string[];
  /** What the subject may have; for a user, their roles' scopes plus direct ones. */
  readonly subjectAllowed: readonly string[];
}

/**
 * DESIGN.md, Scopes: the requested scope (or the client's default) intersected with what both the
 * subject and the client may have. A requested scope outside that is invalid_scope (RFC 6749 §5.2);
 * an unrequested default is silently narrowed. Scopes are case-sensitive.
 */
export function resolveScope(request: ScopeRequest): string[] {
  const subject = new Set(request.subjectAllowed);
  const available = new Set(request.clientAllowed.filter((scope) => subject.has(scope)));
  if (request.requested !== undefined) {
    if (!request.requested.every((scope) => available.has(scope))) {
      throw new OAuthError('invalid_scope', 'the requested scope is not allowed for this user or client');
    }
    return [...request.requested].sort();
  }
  return request.clientDefault.filter((scope) => available.has(scope)).sort();
}
