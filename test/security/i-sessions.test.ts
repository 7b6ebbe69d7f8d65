/**
 * ATTACKS.md section I, the session cases: decisions that compared two hosts' clocks (I5).
 */
import { decodeJwt } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { setAccountPassword } from '../../src/auth/accounts.js';
import { runCli } from '../../src/cli/run.js';
import type { Env } from '../../src/config.js';
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
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' };

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
