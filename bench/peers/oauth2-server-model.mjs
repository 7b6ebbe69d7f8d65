// The PostgreSQL model of the @node-oauth/oauth2-server peer (bench/peers/oauth2-server.mjs), as
// its docs describe a model: fixed SQL through a pg Pool, users' passwords as Argon2id hashes at
// Tessera's production parameters, refresh tokens stored as SHA-256 hashes and revoked (deleted) on
// use, so that each refresh rotates, access tokens as RS256 JWTs signed with jose.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import argon2 from 'argon2';
import { SignJWT } from 'jose';

/** Tessera's production Argon2id parameters (ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM). */
export const ARGON2 = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };
export const ACCESS_TOKEN_SECONDS = 900;
export const REFRESH_TOKEN_SECONDS = 90 * 24 * 3600;

export const SCHEMA = `
  create table clients (id text primary key, secret_hash bytea not null, grants text[] not null, scopes text[] not null);
  create table users (id uuid primary key, username text unique not null, password_hash text not null, scopes text[] not null);
  create table refresh_tokens (
    token_hash bytea primary key,
    client_id text not null references clients (id),
    user_id uuid not null references users (id),
    scope text[] not null,
    expires_at timestamptz not null
  );
  create index refresh_tokens_user on refresh_tokens (user_id);
`;

const sha256 = (value) => createHash('sha256').update(value).digest();

/** The row of a client whose secret is `secret` (stored as its SHA-256: a generated, high-entropy secret). */
export const clientRow = (id, secret, grants, scopes) => [id, sha256(secret), grants, scopes];

/**
 * The model over `pool`. Clients are read once at start and kept (as Tessera keeps its clients):
 * the grants' requests then cost no client query. `issuer` and `privateKey`/`kid` sign access tokens.
 */
export async function createModel(pool, { issuer, privateKey, kid }) {
  const clients = new Map();
  for (const row of (await pool.query('select id, secret_hash, grants, scopes from clients')).rows) clients.set(row.id, row);

  const sign = (client, subject, scope) =>
    new SignJWT({ client_id: client.id, scope: scope.join(' ') })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid })
      .setIssuer(issuer)
      .setSubject(subject)
      .setAudience('tessera')
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(`${ACCESS_TOKEN_SECONDS}s`)
      .sign(privateKey);

  return {
    async getClient(id, secret) {
      const row = clients.get(id);
      if (row === undefined || typeof secret !== 'string' || !timingSafeEqual(sha256(secret), row.secret_hash)) return false;
      return { id: row.id, grants: row.grants, scopes: row.scopes };
    },
    async getUser(username, password) {
      const { rows } = await pool.query('select id, username, password_hash, scopes from users where username = $1', [username]);
      if (rows.length === 0 || !(await argon2.verify(rows[0].password_hash, password))) return false;
      return { id: rows[0].id, username: rows[0].username, scopes: rows[0].scopes };
    },
    async getUserFromClient(client) {
      return { id: client.id, scopes: client.scopes, clientOnly: true };
    },
    async validateScope(user, client, scope) {
      const allowed = client.scopes.filter((each) => user.scopes.includes(each));
      if (scope === undefined || scope.length === 0) return allowed;
      return scope.every((each) => allowed.includes(each)) ? scope : false;
    },
    async generateAccessToken(client, user, scope) {
      return sign(client, user.id, scope ?? []);
    },
    async generateRefreshToken() {
      return randomBytes(32).toString('base64url');
    },
    async saveToken(token, client, user) {
      if (token.refreshToken !== undefined) {
        await pool.query('insert into refresh_tokens (token_hash, client_id, user_id, scope, expires_at) values ($1, $2, $3, $4, $5)', [
          sha256(token.refreshToken),
          client.id,
          user.id,
          token.scope,
          token.refreshTokenExpiresAt,
        ]);
      }
      return { ...token, client, user };
    },
    async getRefreshToken(refreshToken) {
      const { rows } = await pool.query(
        'select t.client_id, t.user_id, t.scope, t.expires_at, u.username, u.scopes from refresh_tokens t join users u on u.id = t.user_id where t.token_hash = $1',
        [sha256(refreshToken)],
      );
      if (rows.length === 0) return false;
      const [row] = rows;
      return {
        refreshToken,
        refreshTokenExpiresAt: row.expires_at,
        scope: row.scope,
        client: { id: row.client_id },
        user: { id: row.user_id, username: row.username, scopes: row.scopes },
      };
    },
    /** Rotation: the presented token is deleted; only one of two racing uses gets a successor. */
    async revokeToken(token) {
      const { rowCount } = await pool.query('delete from refresh_tokens where token_hash = $1', [sha256(token.refreshToken)]);
      return rowCount === 1;
    },
  };
}
