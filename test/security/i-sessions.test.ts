/**
 * ATTACKS.md section I, the session cases: access tokens that outlived what ended their session
 * (I3), and decisions that compared two hosts' clocks (I5).
 */
import { decodeJwt } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { setAccountPassword } from '../../src/auth/accounts.js';
import { runCli } from '../../src/cli/run.js';
import type { Env } from '../../src/config.js';
import { signAccessToken } from '../../src/tokens/access-token.js';
import { createFakeClock, type FakeClock } from '../helpers/clock.js';
import type { TestDatabase } from '../helpers/database.js';
import { holdLoginInVerify } from '../helpers/held-login.js';
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
  useTestService,
} from '../helpers/service.js';

let database: TestDatabase;
let service: TestService;

const running = useTestService();
beforeAll(() => {
  [database, service] = [running.database(), running.current()];
});

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' };
const INVALID_TOKEN = { error: 'invalid_token', error_description: 'the access token is not valid' };
const INVALID_TOKEN_CHALLENGE = 'Bearer realm="tessera", error="invalid_token"';

function refresh(client: TestClient, token: string, app = service.app) {
  return request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: token });
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
        client_id: decodeJwt(victim.token).client_id,
        scope: 'admin',
        created_at: createdAt,
        last_used_at: createdAt,
        expires_at: new Date(service.clock.now() + 15 * MINUTE).toISOString(),
        revoked_at: null,
        revoked_reason: null,
      }],
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
