import type { ClientLookup } from '../auth/client-cache.js';
import { hashClientSecret, verifyClientSecret } from '../auth/client-secrets.js';
import type { Client } from '../db/schema.js';
import { isUuid } from '../ids.js';
import { OAuthError } from './errors.js';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none';

export interface ClientCredentialsInput {
  /** The raw Authorization header, if any. */
  readonly authorization: string | undefined;
  readonly clientId: string | undefined;
  readonly clientSecret: string | undefined;
}

export interface AuthenticatedClient {
  readonly client: Client;
  readonly method: ClientAuthMethod;
}

/** RFC 6749 §5.2: invalid_client is 401 and, since Basic is a method we accept, carries a Basic challenge. */
export function invalidClient(description = 'client authentication failed'): OAuthError {
  return new OAuthError('invalid_client', description, {
    headers: { 'WWW-Authenticate': 'Basic realm="tessera", charset="UTF-8"' },
  });
}

/**
 * RFC 6749 §A.1 allows any printable ASCII; Tessera's client ids are URL- and header-safe. A client
 * id shaped like a user id would make its client_credentials tokens pass for that user's.
 */
export function isValidClientId(id: string): boolean {
  return /^[A-Za-z0-9._~-]{1,64}$/.test(id) && !isUuid(id);
}

/** A hash that matches nothing, compared against when the client is unknown, so both paths do the same work. */
const UNKNOWN_CLIENT_HASH = hashClientSecret('\0unknown-client');

/**
 * RFC 6749 §2.3.1: client_secret_basic or client_secret_post, never both at once (§2.3: one method
 * per request). A public client identifies itself with client_id alone and has no secret.
 */
export async function authenticateClient(
  clients: ClientLookup,
  input: ClientCredentialsInput,
): Promise<AuthenticatedClient> {
  const presented = readCredentials(input);
  // Nothing that cannot be a client id reaches the database (a NUL would make PostgreSQL fail).
  const client = isValidClientId(presented.clientId) ? await clients.find(presented.clientId) : undefined;
  if (presented.method === 'none') {
    if (client?.type !== 'public') throw invalidClient();
    return { client, method: 'none' };
  }
  const matches = verifyClientSecret(presented.secret, client?.secret_hash ?? UNKNOWN_CLIENT_HASH);
  if (client === undefined || client.type !== 'confidential' || !matches) throw invalidClient();
  return { client, method: presented.method };
}

type PresentedCredentials =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly clientId: string; readonly secret: string }
  | { readonly method: 'none'; readonly clientId: string };

function readCredentials(input: ClientCredentialsInput): PresentedCredentials {
  if (input.authorization !== undefined) {
    if (input.clientSecret !== undefined) {
      throw new OAuthError('invalid_request', 'use only one client authentication method');
    }
    const basic = parseBasic(input.authorization);
    if (input.clientId !== undefined && input.clientId !== basic.clientId) {
      throw new OAuthError('invalid_request', 'client_id does not match the Authorization header');
    }
    return { method: 'client_secret_basic', ...basic };
  }
  if (input.clientId === undefined || input.clientId === '') throw invalidClient('client authentication is required');
  if (input.clientSecret !== undefined) {
    // As in a Basic header: an empty secret is no secret, whatever a table holds.
    if (input.clientSecret === '') throw invalidClient();
    return { method: 'client_secret_post', clientId: input.clientId, secret: input.clientSecret };
  }
  return { method: 'none', clientId: input.clientId };
}

/**
 * RFC 6749 §2.3.1 (and RFC 7617): `Basic base64(urlencode(id) ":" urlencode(secret))`. Anything
 * malformed is invalid_client, never a 500.
 */
function parseBasic(header: string): { clientId: string; secret: string } {
  // Node's HTTP parser has already stripped the whitespace around the value (RFC 9110 §5.5).
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header);
  if (!match) throw invalidClient('the Authorization header is not valid Basic credentials');
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) throw invalidClient('the Authorization header is not valid Basic credentials');
  try {
    const clientId = formDecode(decoded.slice(0, colon));
    const secret = formDecode(decoded.slice(colon + 1));
    if (secret === '') throw invalidClient();
    return { clientId, secret };
  } catch (error) {
    if (error instanceof OAuthError) throw error;
    throw invalidClient('the Authorization header is not valid Basic credentials');
  }
}

function formDecode(text: string): string {
  return decodeURIComponent(text.replace(/\+/g, ' '));
}
