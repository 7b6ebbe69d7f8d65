import type { ClientLookup } from '../auth/client-cache.js';
import { matchesRedirectUri } from '../auth/redirect-uris.js';
import { parseScope } from '../auth/scopes.js';
import type { Client } from '../db/schema.js';
import { isValidClientId } from '../oauth/client-auth.js';
import { OAuthError } from '../oauth/errors.js';

/** RFC 6749 §4.1.2.1 and OpenID Connect Core §3.1.2.6: the codes /authorize sends back to the client. */
export type AuthorizeErrorCode =
  | 'invalid_request'
  | 'unauthorized_client'
  | 'access_denied'
  | 'unsupported_response_type'
  | 'invalid_scope'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'login_required'
  | 'consent_required'
  | 'request_not_supported'
  | 'request_uri_not_supported';

/**
 * An error that goes back to the client at its redirect URI (RFC 6749 §4.1.2.1), with `state` as
 * given and `iss` (RFC 9207). Only thrown once the client and the redirect URI are known to be good.
 */
export class AuthorizeError extends Error {
  constructor(
    readonly code: AuthorizeErrorCode,
    readonly description: string,
    readonly redirectUri: string,
    readonly state: string | undefined,
  ) {
    super(`${code}: ${description}`);
    this.name = 'AuthorizeError';
  }
}

/** What GET (or the sign-in form's POST) /authorize asked for, checked. */
export interface AuthorizationRequest {
  readonly client: Client;
  readonly redirectUri: string;
  /** Whether the request named redirect_uri (else the one registered): the token request must then name it too. */
  readonly redirectUriGiven: boolean;
  readonly state: string | undefined;
  readonly codeChallenge: string;
  /** Undefined: the client's default scopes. */
  readonly scope: readonly string[] | undefined;
  readonly nonce: string | undefined;
  /** OIDC Core §3.1.2.1; `none` never shows a page, `login` always does. */
  readonly prompt: ReadonlySet<string>;
  /** Seconds; a session older than this signs in again. */
  readonly maxAge: number | undefined;
}

/** The parameters that travel from GET /authorize through the sign-in form, and nothing else. */
export const AUTHORIZATION_PARAMETERS = [
  'client_id',
  'redirect_uri',
  'response_type',
  'response_mode',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'nonce',
  'prompt',
  'max_age',
] as const;

/**
 * RFC 6749 sets no bound on `state`; clients that pack data into it (a broker's own state, an
 * encrypted return path) reach several hundred characters, so 2048 leaves room while keeping the
 * Location header that echoes it well under the 4 to 8 KB proxies allow. /logout shares it.
 */
export const MAX_STATE_LENGTH = 2048;
const MAX_NONCE_LENGTH = 255;
const PROMPTS = new Set(['none', 'login', 'consent', 'select_account']);
/** RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is always 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

/** A bad client or redirect URI: shown on a page, never redirected to (RFC 6749 §4.1.2.1, RFC 9700 §4.1). */
const untrusted = (description: string) => new OAuthError('invalid_request', description);

/**
 * Checks an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1). The client
 * and the redirect URI first: until both are known good, every error is an OAuthError for a page;
 * after that, an AuthorizeError for the redirect URI. PKCE with S256 is required of every client
 * (RFC 9700 §2.1.1): `plain` and a missing challenge are refused, so a stolen code is useless
 * without the verifier, whatever the client.
 */
export async function readAuthorizationRequest(clients: ClientLookup, input: Readonly<Record<string, unknown>>): Promise<AuthorizationRequest> {
  const single = (name: string): string | undefined => {
    const value = input[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const repeated = (name: string) => input[name] !== undefined && typeof input[name] !== 'string';

  if (repeated('client_id')) throw untrusted('the parameter client_id is repeated');
  const clientId = single('client_id');
  if (clientId === undefined) throw untrusted('client_id is required');
  const client = isValidClientId(clientId) ? await clients.find(clientId) : undefined;
  if (client === undefined) throw untrusted('there is no such client');

  if (repeated('redirect_uri')) throw untrusted('the parameter redirect_uri is repeated');
  const registered = client.redirect_uris ?? [];
  const given = single('redirect_uri');
  // RFC 6749 §3.1.2.3: optional only when exactly one is registered; compared exactly (RFC 9700 §2.1)
  // but for a loopback IP's port (RFC 8252 §7.3). The URI as given, port and all, is the one the
  // code is sent to and bound to: the token request must name that same URI (RFC 6749 §4.1.3).
  if (given === undefined && registered.length !== 1) throw untrusted('redirect_uri is required');
  if (given !== undefined && !registered.some((uri) => matchesRedirectUri(uri, given))) throw untrusted('the redirect_uri is not registered for this client');
  const redirectUri = given ?? registered[0]!;

  const state = repeated('state') ? undefined : single('state');
  // On the page, not at the redirect URI: an error there must carry `state` as given (RFC 6749
  // §4.1.2.1), which would echo the oversized value into the Location header (where a proxy may
  // refuse it), and one without it could not be matched to its request by the client.
  if (state !== undefined && state.length > MAX_STATE_LENGTH) throw untrusted(`state has at most ${MAX_STATE_LENGTH} characters`);
  const fail = (code: AuthorizeErrorCode, description: string) => new AuthorizeError(code, description, redirectUri, state);
  for (const name of AUTHORIZATION_PARAMETERS) if (repeated(name)) throw fail('invalid_request', `the parameter ${name} is repeated`);
  // OIDC Core §6: request objects are not supported.
  if (input['request'] !== undefined) throw fail('request_not_supported', 'request objects are not supported');
  if (input['request_uri'] !== undefined) throw fail('request_uri_not_supported', 'request_uri is not supported');

  const responseType = single('response_type');
  if (responseType === undefined) throw fail('invalid_request', 'response_type is required');
  if (responseType !== 'code') throw fail('unsupported_response_type', 'only response_type=code is supported');
  // OAuth 2.0 Multiple Response Types §2.1: the client says how it expects the answer; only the query is served.
  const responseMode = single('response_mode');
  if (responseMode !== undefined && responseMode !== 'query') throw fail('invalid_request', 'only response_mode=query is supported');
  if (!client.grant_types.includes('authorization_code')) throw fail('unauthorized_client', 'this client may not use the authorization code grant');

  const codeChallenge = single('code_challenge');
  if (codeChallenge === undefined) throw fail('invalid_request', 'code_challenge is required (PKCE with S256)');
  if (single('code_challenge_method') !== 'S256') throw fail('invalid_request', 'code_challenge_method must be S256');
  if (!S256_CHALLENGE.test(codeChallenge)) throw fail('invalid_request', 'code_challenge must be 43 base64url characters (S256)');

  let scope: string[] | undefined;
  try {
    scope = parseScope(single('scope'));
  } catch {
    throw fail('invalid_scope', 'the scope parameter is malformed');
  }
  if (scope !== undefined && !scope.every((name) => client.allowed_scopes.includes(name))) {
    throw fail('invalid_scope', 'the requested scope is not allowed for this client');
  }

  const nonce = single('nonce');
  if (nonce !== undefined && (nonce.length > MAX_NONCE_LENGTH || !/^[\x20-\x7e]+$/.test(nonce))) {
    throw fail('invalid_request', `nonce has at most ${MAX_NONCE_LENGTH} printable ASCII characters`);
  }
  const prompt = new Set((single('prompt') ?? '').split(' ').filter((value) => value !== ''));
  if (![...prompt].every((value) => PROMPTS.has(value))) throw fail('invalid_request', 'prompt must be none, login, consent or select_account');
  if (prompt.has('none') && prompt.size > 1) throw fail('invalid_request', 'prompt=none cannot be combined with other values');
  const maxAgeText = single('max_age');
  if (maxAgeText !== undefined && !/^\d{1,9}$/.test(maxAgeText)) throw fail('invalid_request', 'max_age must be a whole number of seconds');

  return {
    client,
    redirectUri,
    redirectUriGiven: given !== undefined,
    state,
    codeChallenge,
    scope,
    nonce,
    prompt,
    maxAge: maxAgeText === undefined ? undefined : Number(maxAgeText),
  };
}

/** The redirect URI with `params` added to its query (RFC 6749 §4.1.2: its own query is kept). */
export function redirectTo(redirectUri: string, params: Readonly<Record<string, string | undefined>>): string {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.append(name, value);
  return url.href;
}
