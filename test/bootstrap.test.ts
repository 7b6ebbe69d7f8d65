import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { startTestService, testEnv } from './helpers/service.js';

// Both tests start on an empty database: bootstrap does anything only while there is no user.
let database: TestDatabase;
const kek = randomBytes(32).toString('base64');
beforeEach(async () => {
  database = await createTestDatabase();
});
afterEach(async () => {
  await database?.drop();
});

const start = async (username: string, password: string) =>
  startTestService(database, { env: testEnv(database, { KEY_ENCRYPTION_KEYS: kek, BOOTSTRAP_ADMIN_USERNAME: username, BOOTSTRAP_ADMIN_PASSWORD: password }) });

const users = () => database.db.selectFrom('users').select(['id', 'username', 'password_hash']).execute();

it('a weak BOOTSTRAP_ADMIN_PASSWORD fails start-up with a clear message and creates nobody', async () => {
  await expect(start('Root', 'password1')).rejects.toThrow('BOOTSTRAP_ADMIN_*: the password is too common; choose another');
  expect(await users()).toEqual([]);
});

it('creates the admin (normalised username, scope admin) on an empty database, once', async () => {
  const first = await start('Root', 'bootstrap passphrase 1');
  await first.close();
  const [admin, ...others] = await users();
  expect(others).toEqual([]);
  expect(admin).toMatchObject({ username: 'root', password_hash: expect.stringMatching(/^\$argon2id\$/) });
  expect(await database.db.selectFrom('user_scopes').select('scope').where('user_id', '=', admin!.id).execute()).toEqual([{ scope: 'admin' }]);
  expect(first.logs.entries('user_created')).toEqual([expect.objectContaining({ user_id: admin!.id, actor: 'bootstrap' })]);
  expect(first.logs.lines.join('\n')).not.toContain('bootstrap passphrase 1');

  // A second start, with other values, changes nothing: the database has a user.
  const second = await start('someone-else', 'another passphrase 2');
  await second.close();
  expect(await users()).toEqual([admin]);
});
