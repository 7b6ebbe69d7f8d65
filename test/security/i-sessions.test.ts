/**
 * ATTACKS.md section I, the session cases: faults that looked like attacks (I2), access tokens that
 * outlived what ended their session (I3), and decisions that compared two hosts' clocks (I5).
 * The service reaches PostgreSQL through a proxy the tests control (test/helpers/database-proxy.ts),
 * so that a rotation can commit while its answer is lost, or be held up in the network and commit
 * after its 503.
 */
import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import request from 'supertest';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { setAccountPassword } from '../../src/auth/accounts.js';
import { runCli } from '../../src/cli/run.js';
import type { Env } from '../../src/config.js';
import { hashRefreshToken } from '../../src/refresh/tokens.js';
import { signAccessToken } from '../../src/tokens/access-token.js';
import { createFakeClock, type FakeClock } from '../helpers/clock.js';
import type { TestDatabase } from '../helpers/database.js';
import { holdLoginInVerify } from '../helpers/held-login.js';
import { type DatabaseProxy, useProxiedService } from '../helpers/database-proxy.js';
import { watchLogOutput } from '../helpers/logs.js';
import { noteSecret } from '../helpers/secrets.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
} from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

let database: TestDatabase;
let proxy: DatabaseProxy;
let service: TestService;

const proxied = useProxiedService();
beforeAll(() => {
  [database, proxy, service] = [proxied.database(), proxied.proxy(), proxied.service()];
});

const SECOND = 1000;
const MINUTE = 60 * SECOND;
/** DESIGN.md's default REFRESH_REUSE_GRACE. */
const GRACE = 10 * SECOND;
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' };
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' };
const INVALID_TOKEN = { error: 'invalid_token', error_description: 'the access token is not valid' };
const INVALID_TOKEN_CHALLENGE = 'Bearer realm="tessera", error="invalid_token"';
/** The text of advanceFamily's statement (src/db/refresh-families.ts), the one write of a rotation. */
const ROTATION_STATEMENT = 'with "advanced" as';

function refresh(client: TestClient, token: string, app = service.app) {
  return request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: token });
}

/** The service's database, straight (not through the proxy): the test's own view. */
const familyRow = (id: string) => database.db.selectFrom('refresh_families').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const tokenHashOf = async (familyId: string, generation: number) =>
  (await database.db.selectFrom('refresh_tokens').select('token_hash').where('family_id', '=', familyId).where('generation', '=', generation).executeTakeFirstOrThrow()).token_hash;
const eventsOf = (event: string, familyId: string, from: TestService = service) => from.logs.entries(event).filter((entry) => entry['family_id'] === familyId);

/** A user logged in through a client allowed the refresh grant: the login's refresh token and its family (sid). */
async function refreshSession() {
  const client = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const res = await passwordGrant(service.app, client, user);
  expect(res.status).toBe(200);
  return { client, user, parent: res.body.refresh_token as string, familyId: decodeJwt(res.body.access_token).sid as string };
}

/** `tessera <argv>` in-process, on `clock` (another host's), with `stdin` for --password-stdin. */
async function cli(argv: string[], clock: FakeClock, stdin?: string): Promise<number> {
  let stderr = '';
  watchLogOutput(`tessera ${argv.join(' ')}`, () => stderr);
  noteSecret('stdin of a tessera command', stdin);
  const env: Env = { ...testEnv(database), KEY_ENCRYPTION_KEYS: keysOf(service) };
  const code = await runCli(argv, env, {
    readStdin: async () => stdin ?? '',
    stdout: () => undefined,
    stderr: (text) => {
      stderr += text;
    },
  }, clock);
  expect(code, stderr).toBe(0);
  return code;
}

const keysOf = (from: TestService) => from.config.keyEncryptionKeys!.map((key) => key.toString('base64')).join(',');

describe('I2 a rotation whose commit landed but whose answer was lost', () => {
  type Session = Awaited<ReturnType<typeof refreshSession>>;

  /**
   * A rotation that got no answer leaves no token_refreshed line, and one event a replay can be
   * matched with. The first attempt of a refresh reads and rotates in one statement, so the event
   * names the family once a read after the 503 has found it: wait for it.
   */
  async function expectOutcomeUnknownLogged(s: Session): Promise<void> {
    await vi.waitFor(() => expect(eventsOf('refresh_outcome_unknown', s.familyId)).toHaveLength(1), { timeout: 10_000, interval: 50 });
    expect(eventsOf('token_refreshed', s.familyId)).toEqual([]);
    expect(eventsOf('refresh_outcome_unknown', s.familyId)).toEqual([
      expect.objectContaining({ level: 'warn', user_id: s.user.id, client_id: s.client.id, generation_presented: 1 }),
    ]);
  }

  /** Long after the outage, the parent's retry gets the successor the lost rotation committed, and nothing is revoked. */
  async function retryLate(s: Session, outage: number): Promise<string> {
    service.clock.advance(outage);
    const retry = await refresh(s.client, s.parent);
    expect(retry.status).toBe(200);
    expect(hashRefreshToken(retry.body.refresh_token)).toBe(await tokenHashOf(s.familyId, 2));
    expect(decodeJwt(retry.body.access_token).sid).toBe(s.familyId);
    expect(eventsOf('refresh_token_reuse_detected', s.familyId)).toEqual([]);
    expect(eventsOf('refresh_token_replayed', s.familyId)).toEqual([
      expect.objectContaining({ level: 'warn', late: true, user_id: s.user.id, client_id: s.client.id, generation_presented: 1 }),
    ]);
    expect(await familyRow(s.familyId)).toMatchObject({ generation: 2, revoked_at: null });
    return retry.body.refresh_token as string;
  }

  it('I2 PostgreSQL answers held back during a rotation: 503, then a retry well past REFRESH_REUSE_GRACE gets the same successor, no reuse', { timeout: 30_000 }, async () => {
    const s = await refreshSession();

    // The rotation reaches PostgreSQL and commits; its answer never comes back (query_timeout).
    proxy.faultOn(ROTATION_STATEMENT, 'lose-answer');
    let lost: request.Response;
    try {
      lost = await refresh(s.client, s.parent);
    } finally {
      proxy.restore();
    }
    expect(lost.status).toBe(503);
    expect(lost.headers['retry-after']).toBe('5');
    expect(lost.body).toEqual(UNAVAILABLE);
    expect(await familyRow(s.familyId)).toMatchObject({ generation: 2, revoked_at: null });
    await expectOutcomeUnknownLogged(s);

    // The outage lasted far longer than the grace window.
    const successor = await retryLate(s, 30 * GRACE);

    // The successor works once; the parent after that is reuse, and ends the family.
    const next = await refresh(s.client, successor);
    expect(next.status).toBe(200);
    const reuse = await refresh(s.client, s.parent);
    expect(reuse.status).toBe(400);
    expect(reuse.body).toEqual(INVALID_GRANT);
    expect((await refresh(s.client, next.body.refresh_token)).body).toEqual(INVALID_GRANT);
    expect(await familyRow(s.familyId)).toMatchObject({ revoked_reason: 'reuse', successor_ciphertext: null });
    expect(eventsOf('refresh_token_reuse_detected', s.familyId)).toHaveLength(1);
  });

  it('I2 a rotation held up in the network past query_timeout commits after its 503: the retry gets what it sealed, and the event is logged', { timeout: 30_000 }, async () => {
    const s = await refreshSession();

    proxy.faultOn(ROTATION_STATEMENT, 'delay-query');
    try {
      const timedOut = await refresh(s.client, s.parent);
      expect(timedOut.status).toBe(503);
      expect(timedOut.body).toEqual(UNAVAILABLE);
      // Nothing has reached PostgreSQL yet: the 503 went out with the family untouched.
      expect(await familyRow(s.familyId)).toMatchObject({ generation: 1, revoked_at: null });
    } finally {
      proxy.restore();
    }
    // The held statement arrives and commits on its own, with nobody waiting for it.
    await waitFor('the late commit', async () => (await familyRow(s.familyId)).generation === 2);
    await expectOutcomeUnknownLogged(s);

    const successor = await retryLate(s, 5 * MINUTE);
    expect((await refresh(s.client, successor)).status).toBe(200);
    expect(await familyRow(s.familyId)).toMatchObject({ generation: 3, revoked_at: null });
  });

  it('I2 a retry inside REFRESH_REUSE_GRACE is an ordinary retry: logged at info, not late', async () => {
    const { client, parent, familyId } = await refreshSession();
    const first = await refresh(client, parent);
    service.clock.advance(GRACE);
    const retry = await refresh(client, parent);
    expect(retry.body.refresh_token).toBe(first.body.refresh_token);
    expect(eventsOf('refresh_token_replayed', familyId)).toEqual([expect.objectContaining({ level: 'info', generation_presented: 1 })]);
    expect(eventsOf('refresh_token_replayed', familyId)[0]).not.toHaveProperty('late');
  });
});

describe('I3 access tokens end with their session', () => {
  /** An operator: an admin with their own token, who stays logged in throughout. */
  let operator: string;
  beforeAll(async () => {
    const console = await createTestClient(service, { scopes: ['admin'], defaultScopes: ['admin'] });
    const root = await createTestUser(service, { scopes: ['admin'] });
    const res = await passwordGrant(service.app, console, root);
    expect(res.status).toBe(200);
    operator = `Bearer ${res.body.access_token as string}`;
  });
  const admin = (method: 'post' | 'patch' | 'delete', path: string, body?: object) => {
    const req = request(service.app)[method](path).set('Authorization', operator);
    return body === undefined ? req : req.send(body);
  };

  type Victim = { id: string; username: string; password: string; token: string; familyId: string };
  const ENDINGS: [string, (victim: Victim) => Promise<void>][] = [
    ['set-password (CLI)', async (v) => void (await cli(['users', 'set-password', v.username, '--password-stdin'], service.clock, 'an operator-chosen passphrase'))],
    ['set-password (admin API)', async (v) => expect((await admin('post', `/admin/users/${v.id}/password`, {})).status).toBe(200)],
    ['logout (CLI)', async (v) => void (await cli(['users', 'logout', v.username], service.clock))],
    ['logout (admin API)', async (v) => expect((await admin('delete', `/admin/users/${v.id}/sessions`)).status).toBe(200)],
    ['this session ended (admin API)', async (v) => expect((await admin('delete', `/admin/users/${v.id}/sessions/${v.familyId}`)).status).toBe(204)],
    ['disable (CLI)', async (v) => void (await cli(['users', 'disable', v.username], service.clock))],
    ['disable (admin API)', async (v) => expect((await admin('patch', `/admin/users/${v.id}`, { disabled: true })).status).toBe(200)],
    ['delete (CLI)', async (v) => void (await cli(['users', 'delete', v.username], service.clock))],
    ['delete (admin API)', async (v) => expect((await admin('delete', `/admin/users/${v.id}`)).status).toBe(204)],
  ];
  const CLIENTS = [
    ['password only (the README recipe)', ['password']],
    ['password and refresh_token', ['password', 'refresh_token']],
  ] as const;

  /** An admin logged in through a client with these grants: the token works at /admin. */
  async function loggedInAdmin(grantTypes: readonly ('password' | 'refresh_token')[]) {
    const client = await createTestClient(service, { grantTypes: [...grantTypes], scopes: ['admin'], defaultScopes: ['admin'] });
    const user = await createTestUser(service, { scopes: ['admin'] });
    const res = await passwordGrant(service.app, client, user);
    expect(res.status).toBe(200);
    expect(res.body.refresh_token === undefined).toBe(!grantTypes.includes('refresh_token'));
    const token = res.body.access_token as string;
    const familyId = decodeJwt(token).sid as string;
    expect(familyId).toMatch(/^[0-9a-f-]{36}$/);
    return { client, victim: { id: user.id, username: user.username, password: user.password, token, familyId } };
  }

  async function expectDead(client: TestClient, token: string): Promise<void> {
    const bearer = `Bearer ${token}`;
    for (const res of [
      await request(service.app).get('/admin/users').set('Authorization', bearer),
      await request(service.app).get('/userinfo').set('Authorization', bearer),
      await request(service.app).post('/users/me/password').set('Authorization', bearer).send({ current_password: 'whatever it was', new_password: 'something else entirely' }),
    ]) {
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE);
      expect(res.body).toEqual(INVALID_TOKEN);
    }
    const introspection = await request(service.app).post('/introspect').type('form').set('Authorization', client.basic).send({ token });
    expect(introspection.status).toBe(200);
    expect(introspection.body).toStrictEqual({ active: false });
  }

  describe.each(CLIENTS)('a client with %s', (_name, grantTypes) => {
    it.each(ENDINGS)(`I3 %s: the admin's access token stops working at once everywhere Tessera serves`, async (_ending, end) => {
      const { client, victim } = await loggedInAdmin(grantTypes);
      expect((await request(service.app).get('/admin/users').set('Authorization', `Bearer ${victim.token}`)).status).toBe(200);
      expect((await request(service.app).post('/introspect').type('form').set('Authorization', client.basic).send({ token: victim.token })).body).toMatchObject({ active: true });
      await end(victim);
      await expectDead(client, victim.token);
    });
  });

  it("I3 changing one's own password ends the access token that changed it, without a refresh grant too", async () => {
    const { client, victim } = await loggedInAdmin(['password']);
    noteSecret('new password', 'a new passphrase of my own');
    const changed = await request(service.app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${victim.token}`)
      .send({ current_password: victim.password, new_password: 'a new passphrase of my own' });
    expect(changed.status).toBe(204);
    await expectDead(client, victim.token);
  });

  it('I3 a session without refresh tokens is listed like any other, lives as long as its access token, and can be ended', async () => {
    const { victim } = await loggedInAdmin(['password']);
    const list = await request(service.app).get(`/admin/users/${victim.id}/sessions`).set('Authorization', operator);
    expect(list.status).toBe(200);
    const createdAt = new Date(service.clock.now()).toISOString();
    expect(list.body).toEqual({
      items: [{
        id: victim.familyId,
        user_id: victim.id,
        client_id: decodeJwt(victim.token).client_id,
        scope: 'admin',
        created_at: createdAt,
        last_used_at: createdAt,
        expires_at: new Date(service.clock.now() + 15 * MINUTE).toISOString(),
        revoked_at: null,
        revoked_reason: null,
      }],
      next_cursor: null,
      next_after: null,
    });
    expect(await database.db.selectFrom('refresh_tokens').select('token_hash').where('family_id', '=', victim.familyId).execute()).toEqual([]);
  });

  it('I3 a user token without sid (only the previous release issued them) is not live at Tessera\'s own endpoints', async () => {
    const client = await createTestClient(service, { grantTypes: ['password'], scopes: ['admin'], defaultScopes: ['admin'] });
    const user = await createTestUser(service, { scopes: ['admin'] });
    const { token } = await signAccessToken(service.deps, { sub: user.id, clientId: client.id, scope: ['admin'], audience: [], authTime: Math.floor(service.clock.now() / 1000) });
    await expectDead(client, token);
  });
});

describe('I5 no decision compares two hosts\' clocks', () => {
  it('I5 a login right after a password change made by the CLI on a clock 120 s ahead can refresh', async () => {
    const client = await createTestClient(service);
    const user = await createTestUser(service, { scopes: ['profile'] });
    const fastHost = createFakeClock(service.clock.now() + 120 * SECOND);
    await cli(['users', 'set-password', user.username, '--password-stdin'], fastHost, 'the passphrase after the change');

    const login = await passwordGrant(service.app, client, { username: user.username, password: 'the passphrase after the change' });
    expect(login.status).toBe(200);
    const refreshed = await refresh(client, login.body.refresh_token);
    expect(refreshed.status).toBe(200);
    expect(decodeJwt(refreshed.body.access_token).sid).toBe(decodeJwt(login.body.access_token).sid);
  });

  it('I5 two replicas 500 ms apart: a password change on the one ahead, then a login and a refresh on the one behind', async () => {
    const ahead = await startTestService(database, {
      env: testEnv(database, { KEY_ENCRYPTION_KEYS: keysOf(service) }),
      clock: createFakeClock(service.clock.now() + 500),
    });
    try {
      const client = await createTestClient(service);
      const user = await createTestUser(service, { scopes: ['profile'] });
      const first = await passwordGrant(service.app, client, user);
      expect(first.status).toBe(200);
      noteSecret('new password', 'changed on the replica ahead');
      const changed = await request(ahead.app)
        .post('/users/me/password')
        .set('Authorization', `Bearer ${first.body.access_token as string}`)
        .send({ current_password: user.password, new_password: 'changed on the replica ahead' });
      expect(changed.status).toBe(204);

      const login = await passwordGrant(service.app, client, { username: user.username, password: 'changed on the replica ahead' });
      expect(login.status).toBe(200);
      expect((await refresh(client, login.body.refresh_token)).status).toBe(200);
      // The session from before the change is over on both replicas.
      expect((await refresh(client, first.body.refresh_token, ahead.app)).body).toEqual(INVALID_GRANT);
    } finally {
      await ahead.close();
    }
  });

  it('I5 a password_changed_at finer than a millisecond (the column default, now(), in microseconds) still lets the user log in', async () => {
    const client = await createTestClient(service);
    const user = await createTestUser(service, { scopes: ['profile'] });
    // As a row the migration filled in has it: the driver reads it to the millisecond, and the
    // login's guard compares it with what it read.
    await sql`update users set password_changed_at = '2026-01-02 03:04:05.678901+00' where id = ${user.id}`.execute(database.db);
    const res = await passwordGrant(service.app, client, user);
    expect(res.status).toBe(200);
    expect(await database.db.selectFrom('refresh_families').select('id').where('user_id', '=', user.id).execute()).toHaveLength(1);
  });

  it('I5 a password change at the same instant as the last one still voids a login that verified the old password', async () => {
    const client = await createTestClient(service);
    const user = await createTestUser(service, { scopes: ['profile'] });
    // Hold the login inside its password verify while the password changes underneath it, at the
    // very instant the user was created (the clock has not moved): password_changed_at must still move.
    const login = await holdLoginInVerify(service, client, user);
    await setAccountPassword(service.deps.db, service.deps.passwords, user, 'a brand new passphrase', new Date(user.password_changed_at));
    const res = await login.finish();
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
    expect(await database.db.selectFrom('refresh_families').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
  });
});
