import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { setAccountPassword } from '../src/auth/accounts.js';
import { purgeRefreshFamilies } from '../src/refresh/housekeeping.js';
import { openSuccessor } from '../src/refresh/tokens.js';
import { runCli } from '../src/cli/run.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { holdLoginInVerify } from './helpers/held-login.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
} from './helpers/service.js';

let database: TestDatabase;
let service: TestService;
let env: ReturnType<typeof testEnv>;

beforeAll(async () => {
  database = await createTestDatabase();
  env = testEnv(database);
  service = await startTestService(database, { env });
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

const INVALID_GRANT = { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' };
const SECOND = 1000;
const DAY = 86_400 * SECOND;

async function login(client: TestClient, user: { username: string; password: string }, scope?: string) {
  const res = await passwordGrant(service.app, client, user, scope ? { scope } : {});
  expect(res.status).toBe(200);
  return res.body as { access_token: string; refresh_token: string; scope: string };
}

function refresh(client: TestClient, refreshToken: string, extra: Record<string, string> = {}, app = service.app) {
  return request(app)
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'refresh_token', refresh_token: refreshToken, ...extra });
}

async function setup() {
  const client = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile', 'orders:read'] });
  const tokens = await login(client, user, 'profile orders:read');
  return { client, user, tokens };
}

const familyOf = (accessToken: string) => decodeJwt(accessToken).sid as string;
const familyRow = (id: string) => service.deps.db.selectFrom('refresh_families').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

describe('issuance', () => {
  it('the password grant returns an opaque 256-bit refresh token and starts a family named by sid', async () => {
    const { user, tokens } = await setup();
    expect(tokens.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const claims = decodeJwt(tokens.access_token);
    expect(claims.sid).toMatch(/^[0-9a-f-]{36}$/);
    const family = await familyRow(claims.sid as string);
    expect(family).toMatchObject({ user_id: user.id, generation: 1, revoked_at: null, scope: ['orders:read', 'profile'] });
  });

  it('a client not allowed the refresh grant gets no refresh token, and a sid naming a session without one', async () => {
    const client = await createTestClient(service, { grantTypes: ['password'] });
    const user = await createTestUser(service, { scopes: ['profile'] });
    const res = await passwordGrant(service.app, client, user);
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).toBeUndefined();
    // The session lives as long as the access token; it exists so that a logout can end the token (ATTACKS.md I3).
    const family = await familyRow(familyOf(res.body.access_token));
    expect(family).toMatchObject({ user_id: user.id, client_id: client.id, revoked_at: null });
    expect(family.expires_at.getTime()).toBe(service.clock.now() + 900 * SECOND);
    expect(await service.deps.db.selectFrom('refresh_tokens').select('token_hash').where('family_id', '=', family.id).execute()).toEqual([]);
    const rotated = await refresh(client, 'A'.repeat(43));
    expect(rotated.status).toBe(400);
    expect(rotated.body).toEqual({ error: 'unauthorized_client', error_description: 'this client may not use this grant_type' });
  });

  it('the database holds only hashes: no column of any refresh row contains a token', async () => {
    const { tokens, client } = await setup();
    const next = (await refresh(client, tokens.refresh_token)).body.refresh_token as string;
    const dump = JSON.stringify([
      await service.deps.db.selectFrom('refresh_tokens').selectAll().execute(),
      await service.deps.db.selectFrom('refresh_families').selectAll().execute(),
    ]);
    expect(dump).not.toContain(tokens.refresh_token);
    expect(dump).not.toContain(next);
  });
});

describe('the refresh grant', () => {
  it('rotates: a new refresh token, a new access token in the same family, the old token consumed', async () => {
    const { client, user, tokens } = await setup();
    const res = await refresh(client, tokens.refresh_token);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'orders:read profile' });
    expect(res.body.refresh_token).not.toBe(tokens.refresh_token);
    const claims = decodeJwt(res.body.access_token);
    expect(claims).toMatchObject({ sub: user.id, client_id: client.id, sid: familyOf(tokens.access_token), scope: 'orders:read profile' });
    expect(claims.auth_time).toBe(decodeJwt(tokens.access_token).auth_time);
    expect((await familyRow(claims.sid as string)).generation).toBe(2);
    const refreshed = service.logs.entries('token_refreshed').filter((entry) => entry['family_id'] === claims.sid);
    expect(refreshed).toEqual([expect.objectContaining({ level: 'info', audit: true, client_id: client.id, user_id: user.id, ip: expect.any(String) })]);
  });

  it('POST /refresh takes a form body with the same client authentication and response', async () => {
    const { client, tokens } = await setup();
    const res = await request(service.app).post('/refresh').type('form').set('Authorization', client.basic).send({ refresh_token: tokens.refresh_token });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('POST /refresh takes JSON, with client_secret_post credentials', async () => {
    const { client, tokens } = await setup();
    const res = await request(service.app)
      .post('/refresh')
      .send({ refresh_token: tokens.refresh_token, client_id: client.id, client_secret: client.secret });
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('POST /refresh refuses another grant_type, non-string JSON values and other content types', async () => {
    const { client, tokens } = await setup();
    const other = await request(service.app).post('/refresh').set('Authorization', client.basic).send({ grant_type: 'password', refresh_token: tokens.refresh_token });
    expect(other.status).toBe(400);
    expect(other.body).toEqual({ error: 'unsupported_grant_type', error_description: 'this endpoint serves grant_type=refresh_token only' });
    const nested = await request(service.app).post('/refresh').set('Authorization', client.basic).send({ refresh_token: { $ne: '' } });
    expect(nested.status).toBe(400);
    expect(nested.body).toEqual({ error: 'invalid_request', error_description: 'the parameter refresh_token must be a string' });
    const text = await request(service.app).post('/refresh').set('Authorization', client.basic).set('Content-Type', 'text/plain').send(tokens.refresh_token);
    expect(text.status).toBe(400);
    expect(text.body.error).toBe('invalid_request');
    const get = await request(service.app).get('/refresh');
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    // None of these consumed the token.
    expect((await refresh(client, tokens.refresh_token)).status).toBe(200);
  });

  // Refused refreshes (missing, malformed, foreign or mis-scoped tokens, ended users, expired
  // families), reuse and concurrent refreshes are ATTACKS.md B: test/security/b-refresh.test.ts.

  it('a scope the user has lost since login is no longer granted', async () => {
    const { client, user, tokens } = await setup();
    await service.deps.db.deleteFrom('user_scopes').where('user_id', '=', user.id).where('scope', '=', 'orders:read').execute();
    const res = await refresh(client, tokens.refresh_token);
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('profile');
  });
});

describe('races and replays', () => {
  it('a login racing a password change gets no session that outlives the change', async () => {
    const client = await createTestClient(service);
    const user = await createTestUser(service, { scopes: ['profile'] });
    // Hold the login inside its password verify while the password changes underneath it.
    const login = await holdLoginInVerify(service, client, user);
    await setAccountPassword(service.deps.db, service.deps.passwords, user, 'a brand new passphrase', new Date(service.clock.now() + SECOND));
    const res = await login.finish();
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
    expect(await service.deps.db.selectFrom('refresh_families').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
  });

  it('a successor sealed for a grace replay opens only with the parent token and the server secret', async () => {
    const { client, tokens } = await setup();
    const next = await refresh(client, tokens.refresh_token);
    const family = await familyRow(familyOf(tokens.access_token));
    const sealed = family.successor_ciphertext!;
    expect(sealed.startsWith('v2.')).toBe(true);
    expect(openSuccessor(tokens.refresh_token, sealed, family.id, service.deps.successorKeys)).toBe(next.body.refresh_token);
    // A dump plus the (consumed) parent token, without KEY_ENCRYPTION_KEYS: nothing.
    expect(openSuccessor(tokens.refresh_token, sealed, family.id, [randomBytes(32)])).toBeUndefined();
    // The right secret with another token: nothing.
    expect(openSuccessor('B'.repeat(43), sealed, family.id, service.deps.successorKeys)).toBeUndefined();
    // After a key-encryption-key rotation (new key first, old still in the ring) a replay still opens.
    expect(openSuccessor(tokens.refresh_token, sealed, family.id, [randomBytes(32), ...service.deps.successorKeys])).toBe(next.body.refresh_token);
  });

  it('REFRESH_REUSE_GRACE is honoured as configured: it decides how a replay is logged, never whether it is served', async () => {
    const short = await startTestService(database, { env: { ...env, REFRESH_REUSE_GRACE: '2s' }, clock: service.clock });
    try {
      const { client, tokens } = await setup();
      const first = await refresh(client, tokens.refresh_token, {}, short.app);
      service.clock.advance(2 * SECOND);
      expect((await refresh(client, tokens.refresh_token, {}, short.app)).body.refresh_token).toBe(first.body.refresh_token);
      service.clock.advance(1 * SECOND);
      expect((await refresh(client, tokens.refresh_token, {}, short.app)).body.refresh_token).toBe(first.body.refresh_token);
      const replays = short.logs.entries('refresh_token_replayed').filter((e) => e['family_id'] === familyOf(tokens.access_token));
      expect(replays.map((e) => [e['level'], e['late']])).toEqual([['info', undefined], ['warn', true]]);
    } finally {
      await short.close();
    }
  });

  it('a replay inside the grace window returns the same successor, and revokes nothing', async () => {
    const { client, tokens } = await setup();
    const first = await refresh(client, tokens.refresh_token);
    service.clock.advance(9 * SECOND);
    const replay = await refresh(client, tokens.refresh_token);
    expect(replay.status).toBe(200);
    expect(replay.body.refresh_token).toBe(first.body.refresh_token);
    expect(decodeJwt(replay.body.access_token).jti).not.toBe(decodeJwt(first.body.access_token).jti);
    expect(service.logs.entries('refresh_token_replayed').some((e) => e['family_id'] === familyOf(tokens.access_token))).toBe(true);
    expect((await refresh(client, first.body.refresh_token)).status).toBe(200);
  });
});

describe('revocation (RFC 7009)', () => {
  const revoke = (client: TestClient, token: string, hint?: string) =>
    request(service.app)
      .post('/revoke')
      .type('form')
      .set('Authorization', client.basic)
      .send({ token, ...(hint ? { token_type_hint: hint } : {}) });

  it.each([undefined, 'refresh_token', 'access_token', 'something_else'])('revoking a refresh token (hint %s) ends its family', async (hint) => {
    const { client, tokens } = await setup();
    const rotated = await refresh(client, tokens.refresh_token);
    const res = await revoke(client, rotated.body.refresh_token, hint);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).toBe('');
    expect((await refresh(client, rotated.body.refresh_token)).body).toEqual(INVALID_GRANT);
    expect((await familyRow(familyOf(tokens.access_token))).revoked_reason).toBe('logout');
  });

  it("an access token of a revoked family stops working at Tessera's own endpoints at once", async () => {
    const { client, tokens } = await setup();
    const bearer = `Bearer ${tokens.access_token}`;
    expect((await request(service.app).get('/userinfo').set('Authorization', bearer)).status).toBe(200);
    await revoke(client, tokens.refresh_token);
    const res = await request(service.app).get('/userinfo').set('Authorization', bearer);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tessera", error="invalid_token"');
    expect(res.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });
  });

  it('revoking an old token of the family ends the family too', async () => {
    const { client, tokens } = await setup();
    const rotated = await refresh(client, tokens.refresh_token);
    expect((await revoke(client, tokens.refresh_token)).status).toBe(200);
    expect((await refresh(client, rotated.body.refresh_token)).status).toBe(400);
  });

  it('unknown tokens and garbage answer 200 and change nothing', async () => {
    const { client, tokens } = await setup();
    for (const token of ['A'.repeat(43), 'eyJhbGciOiJub25lIn0.e30.', "' OR 1=1--", 'x'.repeat(5000)]) {
      expect((await revoke(client, token)).status).toBe(200);
    }
    expect((await refresh(client, tokens.refresh_token)).status).toBe(200);
  });

  it('revoking an access token (hint access_token) ends its session; another client cannot', async () => {
    const { client, tokens } = await setup();
    const other = await createTestClient(service);
    expect((await revoke(other, tokens.access_token, 'access_token')).status).toBe(200);
    expect((await familyRow(familyOf(tokens.access_token))).revoked_at).toBeNull();
    expect((await revoke(client, tokens.access_token, 'access_token')).status).toBe(200);
    expect((await familyRow(familyOf(tokens.access_token))).revoked_reason).toBe('logout');
    expect((await refresh(client, tokens.refresh_token)).body).toEqual(INVALID_GRANT);
  });

  // Another client's token (ATTACKS.md B10) is in test/security/b-refresh.test.ts.

  it('needs client authentication and a token', async () => {
    const { client, tokens } = await setup();
    const anonymous = await request(service.app).post('/revoke').type('form').send({ token: tokens.refresh_token });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('invalid_client');
    const missing = await request(service.app).post('/revoke').type('form').set('Authorization', client.basic).send({});
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({ error: 'invalid_request', error_description: 'token is required' });
    const get = await request(service.app).get('/revoke');
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    expect((await refresh(client, tokens.refresh_token)).status).toBe(200);
  });
});

describe('logout everywhere', () => {
  async function twoSessions() {
    const client = await createTestClient(service);
    const user = await createTestUser(service, { scopes: ['profile'] });
    const first = await login(client, user);
    const second = await login(client, user);
    return { client, user, sessions: [first, second] };
  }
  const expectAllDead = async (client: TestClient, sessions: { refresh_token: string }[]) => {
    for (const session of sessions) expect((await refresh(client, session.refresh_token)).body).toEqual(INVALID_GRANT);
  };
  const cli = async (...argv: string[]) => {
    let stderr = '';
    const code = await runCli(argv, { ...env, LOG_LEVEL: '' }, { readStdin: async () => 'a brand new passphrase\n', stdout: () => undefined, stderr: (t) => (stderr += t) }, service.clock);
    expect(stderr).toBe('');
    return code;
  };

  it('POST /users/me/password ends every family of the user', async () => {
    const { client, user, sessions } = await twoSessions();
    const res = await request(service.app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${sessions[0]!.access_token}`)
      .send({ current_password: user.password, new_password: 'a brand new passphrase' });
    expect(res.status).toBe(204);
    await expectAllDead(client, sessions);
    expect((await login(client, { username: user.username, password: 'a brand new passphrase' })).refresh_token).toBeDefined();
    expect(service.logs.entries('password_changed').find((e) => e['user_id'] === user.id)).toMatchObject({ sessions_ended: 2 });
  });

  it('POST /users/me/password refuses a wrong current password or a weak new one, and ends nothing', async () => {
    const { client, user, sessions } = await twoSessions();
    const bearer = `Bearer ${sessions[0]!.access_token}`;
    const wrong = await request(service.app).post('/users/me/password').set('Authorization', bearer).send({ current_password: 'nope', new_password: 'a brand new passphrase' });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toEqual({ error: 'invalid_request', error_description: 'the current password is incorrect' });
    const weak = await request(service.app).post('/users/me/password').set('Authorization', bearer).send({ current_password: user.password, new_password: 'password1' });
    expect(weak.status).toBe(400);
    expect(weak.body).toEqual({ error: 'invalid_request', error_description: 'the password is too common; choose another' });
    const same = await request(service.app).post('/users/me/password').set('Authorization', bearer).send({ current_password: user.password, new_password: user.password });
    expect(same.status).toBe(400);
    expect(same.body).toEqual({ error: 'invalid_request', error_description: 'the new password must differ from the current one' });
    const text = await request(service.app).post('/users/me/password').set('Authorization', bearer).set('Content-Type', 'text/plain').send('x');
    expect(text.status).toBe(400);
    expect(text.body).toEqual({ error: 'invalid_request', error_description: 'the request body must be application/x-www-form-urlencoded or application/json' });
    const anonymous = await request(service.app).post('/users/me/password').send({ current_password: user.password, new_password: 'a brand new passphrase' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Bearer realm="tessera"');
    expect((await refresh(client, sessions[1]!.refresh_token)).status).toBe(200);
  });

  it.each([
    ['users set-password --password-stdin', (u: string) => ['users', 'set-password', u, '--password-stdin']],
    ['users disable', (u: string) => ['users', 'disable', u]],
    ['users logout', (u: string) => ['users', 'logout', u]],
    ['users delete', (u: string) => ['users', 'delete', u]],
  ])('the CLI `%s` ends every family of the user', async (_name, argv) => {
    const { client, user, sessions } = await twoSessions();
    expect(await cli(...argv(user.username))).toBe(0);
    await expectAllDead(client, sessions);
  });
});

describe('housekeeping', () => {
  it('`tessera purge` deletes expired families, keeps revoked ones until they expire, and keeps live ones', async () => {
    // Rows dated by hand against the service's clock, which `purge` runs on too.
    const expired = await setup();
    const revoked = await setup();
    await request(service.app).post('/revoke').type('form').set('Authorization', revoked.client.basic).send({ token: revoked.tokens.refresh_token });
    const live = await setup();
    const longAgo = new Date(service.clock.now() - 100 * DAY);
    await service.deps.db.updateTable('refresh_families').set({ expires_at: longAgo }).where('id', '=', familyOf(expired.tokens.access_token)).execute();
    const inTheFuture = new Date(service.clock.now() + 100 * DAY);
    await service.deps.db.updateTable('refresh_families').set({ last_used_at: inTheFuture, expires_at: inTheFuture }).where('id', 'in', [familyOf(revoked.tokens.access_token), familyOf(live.tokens.access_token)]).execute();

    const purged: string[] = [];
    const code = await runCli(['purge', '--json'], env, { readStdin: async () => '', stdout: (t) => purged.push(t), stderr: () => undefined }, service.clock);
    expect(code).toBe(0);
    expect(JSON.parse(purged.join('')).families_deleted).toBeGreaterThanOrEqual(1);
    const remaining = (await service.deps.db.selectFrom('refresh_families').select('id').execute()).map((r) => r.id);
    expect(remaining).not.toContain(familyOf(expired.tokens.access_token));
    expect(remaining).toContain(familyOf(revoked.tokens.access_token));
    expect(remaining).toContain(familyOf(live.tokens.access_token));
    expect(await service.deps.db.selectFrom('refresh_tokens').select('token_hash').where('family_id', '=', familyOf(expired.tokens.access_token)).execute()).toEqual([]);
  });

  it('a purge goes on batch after batch while batches come back full, and stops at its batches per run', async () => {
    const { user, client } = await setup();
    const longAgo = new Date(service.clock.now() - 100 * DAY);
    const expire = async (count: number) => {
      const dead = Array.from({ length: count }, () => ({
        id: randomUUID(),
        user_id: user.id,
        client_id: client.id,
        scope: ['profile'],
        auth_time: longAgo,
        created_at: longAgo,
        expires_at: longAgo,
        last_used_at: longAgo,
        generation: 1,
      }));
      await service.deps.db.insertInto('refresh_families').values(dead).execute();
    };
    // Whatever other tests of this file left to purge goes first, in as many batches as it takes.
    await purgeRefreshFamilies(service.deps);
    await expire(7);
    expect(await purgeRefreshFamilies(service.deps, { size: 2, maxPerRun: 3 })).toBe(6);
    expect(await purgeRefreshFamilies(service.deps, { size: 2, maxPerRun: 3 })).toBe(1);
    await expire(4);
    // A full last batch is followed by one more, which finds nothing.
    expect(await purgeRefreshFamilies(service.deps, { size: 2, maxPerRun: 5 })).toBe(4);
    expect(await purgeRefreshFamilies(service.deps, { size: 2, maxPerRun: 5 })).toBe(0);
  });

  it('purge keeps the sealed successor of a live family however old (a late retry needs it), and skips families a refresh holds', async () => {
    const held = await setup();
    const other = await setup();
    for (const s of [held, other]) expect((await refresh(s.client, s.tokens.refresh_token)).status).toBe(200);
    const longAgo = new Date(service.clock.now() - DAY);
    await service.deps.db.updateTable('refresh_families').set({ rotated_at: longAgo }).where('id', 'in', [familyOf(held.tokens.access_token), familyOf(other.tokens.access_token)]).execute();
    // Both past their absolute lifetime: purge deletes the one no refresh holds.
    await service.deps.db.updateTable('refresh_families').set({ expires_at: longAgo }).where('id', 'in', [familyOf(held.tokens.access_token), familyOf(other.tokens.access_token)]).execute();
    const live = await setup();
    const rotated = await refresh(live.client, live.tokens.refresh_token);
    await service.deps.db.updateTable('refresh_families').set({ rotated_at: longAgo }).where('id', '=', familyOf(live.tokens.access_token)).execute();

    const blocker = await service.deps.db.connection().execute(async (connection) => {
      await sql`begin`.execute(connection);
      await sql`select id from refresh_families where id = ${familyOf(held.tokens.access_token)} for update`.execute(connection);
      try {
        return await runCli(['purge'], env, { readStdin: async () => '', stdout: () => undefined, stderr: () => undefined }, service.clock);
      } finally {
        await sql`rollback`.execute(connection);
      }
    });
    expect(blocker).toBe(0);
    expect((await familyRow(familyOf(held.tokens.access_token))).successor_ciphertext).not.toBeNull();
    expect(await service.deps.db.selectFrom('refresh_families').select('id').where('id', '=', familyOf(other.tokens.access_token)).execute()).toEqual([]);
    expect((await familyRow(familyOf(live.tokens.access_token))).successor_ciphertext).not.toBeNull();
    // A day after the rotation, the parent's retry still gets its unused successor.
    expect((await refresh(live.client, live.tokens.refresh_token)).body.refresh_token).toBe(rotated.body.refresh_token);
  });
});

describe('client ids and JSON bodies', () => {
  it.each([
    ['a form client_id', (t: string) => request(service.app).post('/token').type('form').send({ grant_type: 'refresh_token', refresh_token: t, client_id: 'a\0b' })],
    ['a Basic client_id', (t: string) => request(service.app).post('/token').type('form').set('Authorization', `Basic ${Buffer.from('a%00b:secret').toString('base64')}`).send({ grant_type: 'refresh_token', refresh_token: t })],
    ['a JSON client_id at /refresh', (t: string) => request(service.app).post('/refresh').send({ refresh_token: t, client_id: 'a\u0000b', client_secret: 'x' })],
    ['a client_id at /revoke', (t: string) => request(service.app).post('/revoke').type('form').send({ token: t, client_id: 'a\0b' })],
  ])('a NUL in %s is invalid_client, never a 500', async (_name, send) => {
    const { tokens } = await setup();
    const res = await send(tokens.refresh_token);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('a JSON body that repeats a parameter is invalid_request', async () => {
    const { client, tokens } = await setup();
    const res = await request(service.app)
      .post('/refresh')
      .set('Authorization', client.basic)
      .set('Content-Type', 'application/json')
      .send(`{"refresh_token":"${'A'.repeat(43)}","refresh_token":"${tokens.refresh_token}"}`);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'a parameter is repeated' });
    expect((await refresh(client, tokens.refresh_token)).status).toBe(200);
  });
});

describe('discovery', () => {
  it('lists the refresh grant and the revocation endpoint', async () => {
    const res = await request(service.app).get('/.well-known/oauth-authorization-server');
    expect(res.body.grant_types_supported).toEqual(['password', 'refresh_token', 'client_credentials', 'authorization_code']);
    expect(res.body.revocation_endpoint).toBe('http://tessera.test/revoke');
  });
});
