import { createPrivateKey, randomBytes } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyRing, KeyDecryptionError } from '../../src/keys/key-encryption.js';
import { maintainSigningKeys, promotionDelaySeconds, retentionSeconds } from '../../src/keys/lifecycle.js';
import { hashRefreshToken } from '../../src/refresh/tokens.js';
import { createFakeClock, type FakeClock } from '../helpers/clock.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { ageSigningKeys, databaseNow, kidOfNewToken, makeNextKeyDue } from '../helpers/keys.js';
import { privateKeyMaterial } from '../helpers/secrets.js';
import { createTestClient, createTestUser, startTestService, TEST_ISSUER, testEnv, type TestService } from '../helpers/service.js';
import { type FlowSecrets, loginAdmin, runRealisticFlow } from './flow.js';

/**
 * ATTACKS.md G: secrets at rest. G3 walks a key through its lifecycle first; then a realistic run
 * (test/security/flow.ts) leaves a database that G1 and G2 read directly, every column of every
 * table, as a thief with a dump would.
 */

let database: TestDatabase;
let service: TestService;
let clock: FakeClock;
const SECOND = 1000;

/**
 * Each describe block on a database, key set and clock of its own (its beforeAll and afterAll), so
 * that the keys one block rotates are never in the other's tables, in whichever order they run.
 */
function ownService() {
  beforeAll(async () => {
    clock = createFakeClock();
    database = await createTestDatabase();
    // A 60 s JWKS lifetime and 1 s reloads keep the promotion delay short (67 s).
    service = await startTestService(database, { env: testEnv(database, { JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '1s' }), clock });
  });
  afterAll(async () => {
    await service?.close();
    await database?.drop();
  });
}

const app = () => request(service.app);
const jwks = async () => (await app().get('/.well-known/jwks.json')).body as JSONWebKeySet;
const jwksKids = async () => (await jwks()).keys.map((key) => key.kid);
/**
 * Time passes for the service (its fake clock: tokens' iat and exp) and for the keys (the database's
 * clock, which the key lifecycle runs on) alike.
 */
const passTime = async (seconds: number) => {
  clock.advance(seconds * SECOND);
  await ageSigningKeys(database.db, seconds);
};
/** What the replicas' timers do every KEY_RELOAD_INTERVAL: the lifecycle's pending changes, then a reload. */
const maintain = async () => {
  await maintainSigningKeys({ ...service.deps, ring: service.deps.keyRing });
  await service.deps.keys.reload();
};

describe('G3 key rotation', () => {
  ownService();
  let admin: string;
  beforeAll(async () => {
    admin = (await loginAdmin(service)).authorization;
  });

  /** What a downstream verifier holding `keys` (as fetched then) makes of `token` at the fake clock's now. */
  const verifiesWith = (keys: JSONWebKeySet, token: string) =>
    jwtVerify(token, createLocalJWKSet(keys), { issuer: TEST_ISSUER, audience: TEST_ISSUER, typ: 'at+jwt', algorithms: ['RS256'], currentDate: new Date(clock.now()) }).then(
      () => true,
      () => false,
    );

  it('G3 a new key is published before it signs; tokens of the retired key verify until they expire', async () => {
    const first = service.deps.keys.current().signing.kid;
    const user = await createTestUser(service);
    const client = await createTestClient(service);
    const login = await app().post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'password', username: user.username, password: user.password });
    expect(login.status).toBe(200);
    const oldToken = login.body.access_token as string;
    const oldExpiry = (JSON.parse(Buffer.from(oldToken.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp * SECOND;

    const rotated = await app().post('/admin/keys/rotate').set('Authorization', admin).send({});
    expect(rotated.status).toBe(200);
    const { kid: next, state, created_at, next_change_at } = rotated.body as { kid: string; state: string; created_at: string; next_change_at: string };
    expect(state).toBe('next');
    const delay = promotionDelaySeconds(service.config);
    expect(delay).toBe(67); // JWKS_MAX_AGE 60s (above the 30 s refetch cooldown) + 2 x KEY_RELOAD_INTERVAL 1s + 5s margin
    // Both times are the database's: the activation time was decided when the key was added.
    expect(Date.parse(next_change_at) - Date.parse(created_at)).toBe(delay * SECOND);

    // Published at once, the active key first, but not signing yet.
    expect(await jwksKids()).toEqual([first, next]);
    const fetchedBeforePromotion = await jwks();
    expect(await kidOfNewToken(service)).toBe(first);
    await passTime(delay - 10);
    await maintain();
    expect(await kidOfNewToken(service)).toBe(first);

    await passTime(10);
    await maintain();
    const signedByNext = await app().post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'password', username: user.username, password: user.password });
    expect(decodeProtectedHeader(signedByNext.body.access_token).kid).toBe(next);
    // A verifier that cached the JWKS before the promotion already knows the key that now signs.
    expect(await verifiesWith(fetchedBeforePromotion, signedByNext.body.access_token)).toBe(true);
    expect(await jwksKids()).toEqual([next, first]);
    expect(service.logs.entries('signing_key_activated')).toEqual([expect.objectContaining({ kid: next })]);

    // The retired key's token works, here and downstream, up to its last second.
    await passTime((oldExpiry - 1 * SECOND - clock.now()) / SECOND);
    await maintain();
    expect((await app().get('/userinfo').set('Authorization', `Bearer ${oldToken}`)).status).toBe(200);
    expect(await verifiesWith(await jwks(), oldToken)).toBe(true);
    const listed = (await app().get('/admin/keys').set('Authorization', admin)).body.items as { kid: string; state: string; retired_at: string | null; next_change_at: string | null }[];
    expect(listed.map(({ kid, state: s }) => ({ kid, state: s }))).toEqual([
      { kid: next, state: 'active' },
      { kid: first, state: 'retired' },
    ]);
    // It stays published for the retention after it retired: past the lifetime of any token it
    // signed (they were all signed before it retired) and the verifiers' 5 s tolerance.
    const retention = Date.parse(listed[1]!.next_change_at!) - Date.parse(listed[1]!.retired_at!);
    expect(retention).toBe(retentionSeconds(service.config) * SECOND);
    expect(retention).toBeGreaterThan(service.config.accessTokenTtl * SECOND + 5 * SECOND);

    // Past its expiry (and the tolerance) the token is refused; the retired key leaves the JWKS only when its retention ends.
    await passTime((oldExpiry + 6 * SECOND - clock.now()) / SECOND);
    expect((await app().get('/userinfo').set('Authorization', `Bearer ${oldToken}`)).status).toBe(401);
    const untilRemoval = (Date.parse(listed[1]!.next_change_at!) - (await databaseNow(database.db))) / SECOND;
    await passTime(untilRemoval - 10);
    await maintain();
    expect(await jwksKids()).toEqual([next, first]);
    await passTime(11);
    await maintain();
    expect(await jwksKids()).toEqual([next]);
    expect(service.logs.entries('signing_key_removed')).toEqual([expect.objectContaining({ kid: first })]);
  });
});

describe('after a realistic run', () => {
  ownService();
  let flow: FlowSecrets;
  /** Every row of every table of Tessera's schema, as JSON text: what a database dump holds. */
  let dump: { table: string; row: string }[];

  beforeAll(async () => {
    flow = await runRealisticFlow(service); // it rotates a key in: a next key is waiting
    // Promote it and rotate again, so that the keys table holds a key in every state.
    await makeNextKeyDue(database.db);
    await maintain();
    expect((await app().post('/admin/keys/rotate').set('Authorization', flow.admin).send({})).status).toBe(200);
    const states = await database.db.selectFrom('signing_keys').select('state').orderBy('state').execute();
    expect(states.map((row) => row.state)).toEqual(['active', 'next', 'retired']);

    const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema()`.execute(database.db);
    dump = [];
    for (const { name } of tables.rows) {
      const rows = await sql<{ row: string }>`select row_to_json(t)::text as row from ${sql.table(name)} t`.execute(database.db);
      dump.push(...rows.rows.map(({ row }) => ({ table: name, row })));
    }
  });

  /** A secret as typed, and a base64url secret's bytes in hex and standard base64, as a careless store might keep them. */
  const encodings = (secret: string) => {
    const bytes = /^[A-Za-z0-9_-]+$/.test(secret) ? Buffer.from(secret, 'base64url') : Buffer.from(secret, 'utf8');
    return [secret, bytes.toString('hex'), bytes.toString('base64')];
  };
  /** The rows that hold any of `secrets` in any encoding. */
  const rowsHolding = (secrets: readonly string[]) =>
    dump.filter(({ row }) => secrets.some((secret) => encodings(secret).some((form) => row.includes(form)))).map(({ table }) => table);

  /** The private key of every signing key row, opened with the service's KEY_ENCRYPTION_KEYS. */
  const privateKeys = async () =>
    (await database.db.selectFrom('signing_keys').selectAll().execute()).map((row) =>
      createPrivateKey({ key: service.deps.keyRing.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid), format: 'der', type: 'pkcs8' }),
    );

  it('G1 refresh tokens are stored only as hashes: no table holds an issued token in any encoding', async () => {
    expect(flow.refreshTokens.length).toBeGreaterThanOrEqual(6);
    expect(dump.length).toBeGreaterThan(20);
    expect(rowsHolding(flow.refreshTokens)).toEqual([]);
    // What is kept is each token's SHA-256 (a 256-bit random token needs no slow hash): the live one is found by it.
    const stored = (await database.db.selectFrom('refresh_tokens').select('token_hash').execute()).map((row) => row.token_hash);
    expect(stored.every((hash) => /^[A-Za-z0-9_-]{43}$/.test(hash))).toBe(true);
    expect(stored).toContain(hashRefreshToken(flow.refreshTokens.at(-1)!));
  });

  it('G1 client secrets are stored only as hashes', async () => {
    expect(flow.clientSecrets.length).toBeGreaterThanOrEqual(3);
    expect(rowsHolding(flow.clientSecrets)).toEqual([]);
    const clients = await database.db.selectFrom('clients').select(['type', 'secret_hash']).execute();
    expect(clients.filter((client) => client.type === 'confidential')).toHaveLength(2); // the flow's admin client and gateway
    for (const client of clients) {
      if (client.type === 'confidential') expect(client.secret_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
      else expect(client.secret_hash).toBeNull();
    }
  });

  it('G1 passwords are stored only as salted PHC $argon2id$ strings at the configured cost', async () => {
    expect(flow.passwords.length).toBeGreaterThanOrEqual(8);
    expect(rowsHolding(flow.passwords)).toEqual([]);
    const hashes = (await database.db.selectFrom('users').select('password_hash').execute()).map((row) => row.password_hash);
    expect(hashes).toHaveLength(3); // the flow's admin, alice and bob
    const { memoryKib, iterations, parallelism } = service.config.argon2;
    for (const hash of hashes) {
      expect(hash).toMatch(/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{22,}\$[A-Za-z0-9+/]{43,}$/);
      expect(hash.startsWith(`$argon2id$v=19$m=${memoryKib},t=${iterations},p=${parallelism}$`)).toBe(true);
    }
    expect(new Set(hashes.map((hash) => hash.split('$')[4])).size).toBe(hashes.length); // a salt of its own each
  });

  it('G2 private keys are encrypted at rest: no PEM, no private JWK member in any table, and another KEK opens none', async () => {
    const rows = await database.db.selectFrom('signing_keys').selectAll().execute();
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(JSON.stringify(row)).not.toMatch(/BEGIN|PRIVATE KEY/);
      expect(Object.keys(row.public_jwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
      const stranger = createKeyRing([randomBytes(32)]);
      expect(() => stranger.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid)).toThrow(KeyDecryptionError);
    }
    const material = (await privateKeys()).flatMap(privateKeyMaterial);
    expect(material.length).toBeGreaterThan(3 * 40);
    expect(rowsHolding(material)).toEqual([]);
  });

  it('G2 nothing served reveals a private key: JWKS, discovery, the admin key listing, every response of the run', async () => {
    const served = [
      ...flow.responses,
      ...(await Promise.all(['/.well-known/jwks.json', '/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'].map(async (path) => (await app().get(path)).text))),
      (await app().get('/admin/keys').set('Authorization', flow.admin)).text,
    ];
    const material = (await privateKeys()).flatMap(privateKeyMaterial);
    expect(served.filter((text) => material.some((secret) => text.includes(secret)) || /PRIVATE KEY/.test(text))).toEqual([]);
    for (const key of (await jwks()).keys) expect(Object.keys(key).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
  });

  it('G2 nothing logged reveals a private key', async () => {
    const material = (await privateKeys()).flatMap(privateKeyMaterial);
    expect(service.logs.lines.length).toBeGreaterThan(40); // the flow alone logs more, whatever ran before
    expect(service.logs.lines.filter((line) => material.some((secret) => line.includes(secret)) || /PRIVATE KEY/.test(line))).toEqual([]);
  });
});
