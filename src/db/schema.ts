import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

/** Timestamps: written as Date (or left to the default), read as Date. */
type Timestamp = ColumnType<Date, Date | undefined, Date>;

export type ClientType = 'confidential' | 'public';
export type GrantType = 'password' | 'refresh_token' | 'client_credentials' | 'authorization_code';
export type KeyState = 'next' | 'active' | 'retired';

export interface UsersTable {
  id: string;
  username: string;
  password_hash: string;
  disabled: Generated<boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
  password_changed_at: Timestamp;
  /** Normalised (src/auth/profile.ts); unique case-insensitively when set. */
  email: ColumnType<string | null, string | null | undefined, string | null>;
  email_verified: Generated<boolean>;
  name: ColumnType<string | null, string | null | undefined, string | null>;
  /** A JSON object of at most 4 KiB serialised; written as its JSON text. */
  attributes: ColumnType<Attributes, string | undefined, string>;
}

/** A user's attributes: a JSON object (src/auth/profile.ts bounds it). */
export type Attributes = Record<string, unknown>;
/** A client's claims from user attributes: claim name -> `attributes.<name>[.<name>]`. */
export type TokenClaimMap = Record<string, string>;

export interface RolesTable {
  name: string;
  description: Generated<string>;
  created_at: Timestamp;
}

export interface RoleScopesTable {
  role_name: string;
  scope: string;
}

export interface UserRolesTable {
  user_id: string;
  role_name: string;
}

export interface UserScopesTable {
  user_id: string;
  scope: string;
}

export interface ClientsTable {
  id: string;
  name: Generated<string>;
  type: ClientType;
  secret_hash: string | null;
  grant_types: GrantType[];
  allowed_scopes: Generated<string[]>;
  default_scopes: Generated<string[]>;
  audience: Generated<string[]>;
  /** Requests per CLIENT_RATE_WINDOW once authenticated; null: CLIENT_RATE_LIMIT, if set. */
  rate_limit: number | null;
  /** Put the user's role names in its access tokens as `roles` (RFC 9068 §2.2.3.1). */
  roles_claim: Generated<boolean>;
  /** Claims taken from user attributes (src/auth/token-claims.ts); written as its JSON text. */
  token_claims: ColumnType<TokenClaimMap, string | undefined, string>;
  /** Where /authorize may send a code (exact match); null: none (a client of the previous release). */
  redirect_uris: ColumnType<string[] | null, string[] | undefined, string[]>;
  /** Where /logout may send the browser back to (exact match); null: none. */
  post_logout_redirect_uris: ColumnType<string[] | null, string[] | undefined, string[]>;
  /** Null or true: first-party, no consent screen (room for one for third-party clients). */
  first_party: ColumnType<boolean | null, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface SigningKeysTable {
  kid: string;
  state: KeyState;
  algorithm: string;
  public_jwk: ColumnType<Record<string, unknown>, string, string>;
  private_key_ciphertext: string;
  kek_id: string;
  /** Stamped by PostgreSQL (now()), as every time of the key lifecycle: one clock for every replica. */
  created_at: Date;
  activated_at: Date | null;
  retired_at: Date | null;
  /** When a next key starts signing, decided when it is added; null on keys of the previous release. */
  activates_at: Date | null;
}

/** What a serving replica announces about the keys it serves (src/db/replica-settings.ts). Seconds. */
export interface ReplicaSettingsTable {
  jwks_max_age: number;
  key_reload_interval: number;
  access_token_ttl: number;
  announced_at: Timestamp;
}

export type FamilyRevocationReason = 'reuse' | 'logout' | 'password_changed' | 'user_disabled' | 'admin';

export interface RefreshFamiliesTable {
  id: string;
  user_id: string;
  client_id: string;
  scope: string[];
  auth_time: Date;
  created_at: Date;
  expires_at: Date;
  last_used_at: Date;
  generation: number;
  rotated_at: Date | null;
  successor_ciphertext: string | null;
  revoked_at: Date | null;
  revoked_reason: FamilyRevocationReason | null;
  /** The browser session (hosted sign-in) whose code started the family; null for other logins. */
  browser_session_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface BrowserSessionsTable {
  id: string;
  token_hash: string;
  user_id: string;
  password_changed_at: Date;
  auth_time: Date;
  created_at: Date;
  expires_at: Date;
  ended_at: Date | null;
}

export interface AuthorizationCodesTable {
  code_hash: string;
  client_id: string;
  user_id: string;
  browser_session_id: string;
  redirect_uri: string;
  /** Whether the authorization request named redirect_uri (RFC 6749 §4.1.3); null on codes made before this column. */
  redirect_uri_given: boolean | null;
  code_challenge: string;
  scope: string[];
  nonce: string | null;
  password_changed_at: Date;
  auth_time: Date;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
  family_id: string | null;
}

export interface RefreshTokensTable {
  token_hash: string;
  family_id: string;
  generation: number;
  created_at: Date;
}

export interface PasswordResetTokensTable {
  /** SHA-256 of the token (base64url): the token itself is only ever in the mail. */
  token_hash: string;
  /** Null only inside the transaction of a request for nobody, which deletes the row again. */
  user_id: string | null;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
}

export type AuditActorType = 'user' | 'client' | 'cli' | 'system';

/** One audit event (src/audit/): written with the change it records, or in a batch shortly after. */
export interface AuditEventsTable {
  /** bigint: read as a string. */
  id: ColumnType<string, never, never>;
  occurred_at: Date;
  type: string;
  actor_type: AuditActorType;
  actor_id: string | null;
  subject: string | null;
  client_id: string | null;
  ip: string | null;
  request_id: string | null;
  details: ColumnType<Record<string, unknown>, Record<string, unknown>, never>;
}

export interface Database {
  users: UsersTable;
  roles: RolesTable;
  role_scopes: RoleScopesTable;
  user_roles: UserRolesTable;
  user_scopes: UserScopesTable;
  clients: ClientsTable;
  signing_keys: SigningKeysTable;
  replica_settings: ReplicaSettingsTable;
  refresh_families: RefreshFamiliesTable;
  refresh_tokens: RefreshTokensTable;
  password_reset_tokens: PasswordResetTokensTable;
  browser_sessions: BrowserSessionsTable;
  authorization_codes: AuthorizationCodesTable;
  audit_events: AuditEventsTable;
}

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type Client = Selectable<ClientsTable>;
export type NewClient = Insertable<ClientsTable>;
export type ClientUpdate = Updateable<ClientsTable>;
export type SigningKeyRow = Selectable<SigningKeysTable>;
export type RefreshFamily = Selectable<RefreshFamiliesTable>;
export type BrowserSession = Selectable<BrowserSessionsTable>;
export type AuthorizationCode = Selectable<AuthorizationCodesTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
export type NewAuditEventRow = Insertable<AuditEventsTable>;
