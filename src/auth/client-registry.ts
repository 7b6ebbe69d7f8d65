import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { deleteClient, findClientById, insertClient, lockClient, updateClient, updateClientSecretHash } from '../db/clients.js';
import { isUniqueViolation } from '../db/errors.js';
import type { Client, ClientType, Database, GrantType } from '../db/schema.js';
import { inTransaction } from '../db/transaction.js';
import { isValidClientId } from '../oauth/client-auth.js';
import { generateClientSecret, hashClientSecret, isSendableSecret, MIN_SUPPLIED_SECRET_LENGTH } from './client-secrets.js';
import { type CheckedSettings, checkSettings, ClientError, invalid } from './client-settings.js';

// The rules of client settings and the error type live in ./client-settings.ts; importers keep this path.
export { checkRateLimit, ClientError, type ClientErrorCode } from './client-settings.js';

/** Grants a confidential client gets when none are named. */
const DEFAULT_GRANT_TYPES: readonly GrantType[] = ['password', 'refresh_token'];

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

const noSuchClient = (id: string) => new ClientError('not_found', `no such client: ${id}`);

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
