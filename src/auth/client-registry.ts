import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { MAX_CLIENT_RATE_LIMIT } from '../config.js';
import { deleteClient, findClientById, insertClient, lockClient, updateClient, updateClientSecretHash } from '../db/clients.js';
import { isUniqueViolation } from '../db/errors.js';
import type { Client, ClientType, Database, GrantType, TokenClaimMap } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import { isValidClientId } from '../oauth/client-auth.js';
import { generateClientSecret, hashClientSecret, isSendableSecret, MIN_SUPPLIED_SECRET_LENGTH } from './client-secrets.js';
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
/** Grants a confidential client gets when none are named. */
const DEFAULT_GRANT_TYPES: readonly GrantType[] = ['password', 'refresh_token'];
const MAX_NAME_LENGTH = 200;
/** An `aud` value (RFC 7519 §4.1.3: a StringOrURI); no spaces, so it cannot be mistaken for a list. */
const AUDIENCE = /^[\x21-\x7e]{1,255}$/;

export interface ClientSettings {
  readonly name?: string | undefined;
  /** Absent: password and refresh_token, for a confidential client only. */
  readonly grantTypes?: readonly string[] | undefined;
  readonly scopes?: readonly string[] | undefined;
  /** Absent at creation: the allowed scopes. */
  readonly defaultScopes?: readonly string[] | undefined;
  readonly audience?: readonly string[] | undefined;
  /**
   * Requests per CLIENT_RATE_WINDOW once authenticated (refresh, revoke, introspection, client
   * credentials); null: none of its own (CLIENT_RATE_LIMIT applies if set). Absent: unchanged, or
   * null for a new client.
   */
  readonly rateLimit?: number | null | undefined;
  /** Put the user's role names in its access tokens as `roles` (RFC 9068 §2.2.3.1). Absent: unchanged, or false. */
  readonly rolesClaim?: boolean | undefined;
  /** Claims from user attributes, `{"tenant": "attributes.tenant"}` (src/auth/token-claims.ts); replaces the map. Absent: unchanged, or none. */
  readonly tokenClaims?: unknown;
  /** Where /authorize may send codes (src/auth/redirect-uris.ts); the authorization_code grant needs one. */
  readonly redirectUris?: readonly string[] | undefined;
  /** Where /logout may send the browser back to. */
  readonly postLogoutRedirectUris?: readonly string[] | undefined;
}

export interface NewClientInput extends ClientSettings {
  /** Absent: a random one. */
  readonly id?: string | undefined;
  readonly type?: ClientType | undefined;
  /** A secret supplied by an operator (migrating an existing client); absent: a generated one. */
  readonly secret?: string | undefined;
}

export interface RegisteredClient {
  readonly client: Client;
  /** The generated secret, to be shown once; undefined for a public client or a supplied secret. */
  readonly generatedSecret: string | undefined;
}

/** Registers a client from raw input (CLI, admin API): one set of rules. */
export async function registerClient(db: Kysely<Database>, input: NewClientInput, now: Date): Promise<RegisteredClient> {
  const { id, type, settings } = checkedNewClient(input, input.secret !== undefined);
  const generatedSecret = type === 'confidential' && input.secret === undefined ? generateClientSecret() : undefined;
  const secret = type === 'public' ? undefined : (generatedSecret ?? checkedSuppliedSecret(input.secret));
  try {
    const client = await insertClient(db, {
      id,
      type,
      secret_hash: secret === undefined ? null : hashClientSecret(secret),
      ...settings,
      created_at: now,
      updated_at: now,
    });
    return { client, generatedSecret };
  } catch (error) {
    if (isUniqueViolation(error)) throw new ClientError('client_exists', `a client with id ${id} already exists`);
    throw error;
  }
}

/**
 * What registerClient would refuse in `input` before it looks at the secret itself or the
 * database, or undefined: the CLI checks its command line with it before it reads standard input
 * or opens a database.
 */
export function checkNewClient(input: Omit<NewClientInput, 'secret'>, secretSupplied: boolean): string | undefined {
  try {
    checkedNewClient(input, secretSupplied);
    return undefined;
  } catch (error) {
    if (error instanceof ClientError) return error.message;
    throw error;
  }
}

function checkedNewClient(input: Omit<NewClientInput, 'secret'>, secretSupplied: boolean): { id: string; type: ClientType; settings: CheckedSettings } {
  const id = input.id ?? randomBytes(12).toString('base64url');
  if (!isValidClientId(id)) {
    throw invalid('a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid');
  }
  const type = input.type ?? 'confidential';
  // DESIGN.md: the password grant is for confidential clients unless an operator says otherwise.
  if (type === 'public' && input.grantTypes === undefined) {
    throw invalid('a public client needs its grant types named explicitly (authorization_code, refresh_token, password)');
  }
  const settings = checkSettings(type, {
    name: input.name ?? id,
    grantTypes: input.grantTypes ?? DEFAULT_GRANT_TYPES,
    scopes: input.scopes ?? [],
    defaultScopes: input.defaultScopes ?? input.scopes ?? [],
    audience: input.audience ?? [],
    rateLimit: input.rateLimit ?? null,
    rolesClaim: input.rolesClaim ?? false,
    tokenClaims: input.tokenClaims ?? {},
    redirectUris: input.redirectUris ?? [],
    postLogoutRedirectUris: input.postLogoutRedirectUris ?? [],
  });
  if (type === 'public' && secretSupplied) throw invalid('a public client has no secret');
  return { id, type, settings };
}

/**
 * Changes a client's settings; its id and type never change. The result must hold the same rules
 * as a new client's, so the client is locked while the change is checked against what it keeps.
 */
export async function updateClientSettings(db: Kysely<Database>, id: string, changes: ClientSettings, now: Date): Promise<Client> {
  return inTransaction(db, async (trx) => {
    const current = isValidClientId(id) ? await lockClient(trx, id) : undefined;
    if (current === undefined) throw noSuchClient(id);
    const settings = checkSettings(current.type, {
      name: changes.name ?? current.name,
      grantTypes: changes.grantTypes ?? current.grant_types,
      scopes: changes.scopes ?? current.allowed_scopes,
      defaultScopes: changes.defaultScopes ?? current.default_scopes,
      audience: changes.audience ?? current.audience,
      rateLimit: changes.rateLimit === undefined ? current.rate_limit : changes.rateLimit,
      rolesClaim: changes.rolesClaim ?? current.roles_claim,
      tokenClaims: changes.tokenClaims ?? current.token_claims,
      redirectUris: changes.redirectUris ?? current.redirect_uris ?? [],
      postLogoutRedirectUris: changes.postLogoutRedirectUris ?? current.post_logout_redirect_uris ?? [],
    });
    return (await updateClient(trx, id, { ...settings, updated_at: now }))!;
  });
}

/**
 * A new secret for a confidential client; the old one stops working at once. Returns the
 * generated secret, or undefined when the operator supplied one.
 */
export async function rotateClientSecret(db: Kysely<Database>, id: string, now: Date, supplied?: string): Promise<string | undefined> {
  const client = await requireClient(db, id);
  if (client.type !== 'confidential') throw new ClientError('no_secret', `client ${id} is public and has no secret`);
  const generated = supplied === undefined ? generateClientSecret() : undefined;
  const secret = generated ?? checkedSuppliedSecret(supplied);
  if (!(await updateClientSecretHash(db, id, hashClientSecret(secret), now))) throw noSuchClient(id);
  return generated;
}

/** A malformed id names no client and never reaches PostgreSQL. */
export async function requireClient(db: Kysely<Database>, id: string): Promise<Client> {
  const client = isValidClientId(id) ? await findClientById(db, id) : undefined;
  if (client === undefined) throw noSuchClient(id);
  return client;
}

/** The client's refresh families go with it (cascade): its users' sessions end. */
export async function removeClient(db: Kysely<Database>, id: string): Promise<void> {
  if (!isValidClientId(id) || !(await deleteClient(db, id))) throw noSuchClient(id);
}

/** Requests per CLIENT_RATE_WINDOW, or null for none of its own: what is wrong with it, or undefined. */
export function checkRateLimit(rateLimit: number | null): string | undefined {
  const valid = rateLimit === null || (Number.isSafeInteger(rateLimit) && rateLimit >= 1 && rateLimit <= MAX_CLIENT_RATE_LIMIT);
  return valid ? undefined : `a rate limit is a whole number of requests from 1 to ${MAX_CLIENT_RATE_LIMIT}, or none`;
}

const noSuchClient = (id: string) => new ClientError('not_found', `no such client: ${id}`);
const invalid = (message: string) => new ClientError('invalid_client_metadata', message);

interface CheckedSettings {
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

function checkSettings(
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

/**
 * A supplied secret must carry what a generated one carries, and be sent the same way by every
 * client: RFC 6749 §2.3.1 wants the secret form-encoded (App. B) inside the Basic header, and many
 * clients skip that (requests' HTTPBasicAuth, `curl -u`, authlib 1.2), so a `%`, `+` or `:` would
 * reach Tessera differently from one client to the next. Generated secrets (base64url) qualify.
 */
function checkedSuppliedSecret(secret: string | undefined): string {
  if (secret === undefined || secret.length < MIN_SUPPLIED_SECRET_LENGTH) {
    throw new ClientError('weak_secret', `a client secret must have at least ${MIN_SUPPLIED_SECRET_LENGTH} characters`);
  }
  if (!isSendableSecret(secret)) {
    throw new ClientError(
      'weak_secret',
      'a client secret may hold only letters, digits and - . _ ~ (RFC 3986 unreserved characters), which every client sends alike in a Basic header',
    );
  }
  return secret;
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** What operators see of a client (admin API, CLI): never the secret's hash. */
export function clientView(client: Client) {
  return {
    id: client.id,
    name: client.name,
    type: client.type,
    grant_types: client.grant_types,
    scopes: client.allowed_scopes,
    default_scopes: client.default_scopes,
    audience: client.audience,
    rate_limit: client.rate_limit,
    roles_claim: client.roles_claim,
    token_claims: client.token_claims,
    redirect_uris: client.redirect_uris ?? [],
    post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
    created_at: client.created_at,
    updated_at: client.updated_at,
  };
}
