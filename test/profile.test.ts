import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { runCliOn } from './helpers/cli.js';
import type { TestDatabase } from './helpers/database.js';
import {
  type AdminService,
  createTestUser,
  passwordGrant,
  startAdminService,
  type TestClient,
  type TestService,
  uniqueName,
} from './helpers/service.js';

// Issue 21 item 1: email, email_verified, name and attributes on users, through the admin API,
// the CLI and /register, and the OIDC claims /userinfo answers under the email and profile scopes.

let database: TestDatabase;
let service: TestService;
let env: Env;
let gateway: TestClient;
let adminToken: string;
let started: AdminService | undefined;

beforeAll(async () => {
  started = await startAdminService({ env: { REGISTRATION: 'open' }, scopes: ['profile', 'email', 'orders:read'], defaultScopes: ['orders:read'] });
  ({ database, service, env, gateway, adminToken } = started);
});
afterAll(() => started?.close());

const admin = () => ({
  post: (path: string, body: object) => request(service.app).post(path).set('Authorization', `Bearer ${adminToken}`).send(body),
  patch: (path: string, body: object) => request(service.app).patch(path).set('Authorization', `Bearer ${adminToken}`).send(body),
  get: (path: string) => request(service.app).get(path).set('Authorization', `Bearer ${adminToken}`),
});
const cli = (argv: readonly string[]) => runCliOn(env, argv, { clock: service.clock });
const password = () => `Tessera-${randomBytes(8).toString('hex')}`;
const invalid = (description: string) => ({ error: 'invalid_request', error_description: description });

async function rowOf(id: string) {
  return database.db.selectFrom('users').select(['email', 'email_verified', 'name', 'attributes']).where('id', '=', id).executeTakeFirstOrThrow();
}

describe('the admin API', () => {
  it('creates a user with a profile, normalising the email, and shows it', async () => {
    const username = uniqueName('zoe');
    const res = await admin().post('/admin/users', {
      username,
      password: password(),
      email: '  Zoe.Smith@Example.COM ',
      email_verified: true,
      name: ' Zoë Smith ',
      attributes: { tenant: 'acme', org: { id: 42, units: ['a', 'b'] } },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      username,
      email: 'Zoe.Smith@example.com',
      email_verified: true,
      name: 'Zoë Smith',
      attributes: { tenant: 'acme', org: { id: 42, units: ['a', 'b'] } },
    });
    expect((await admin().get(`/admin/users/${res.body.id}`)).body).toMatchObject({ email: 'Zoe.Smith@example.com', email_verified: true });
  });

  it('shows a user without a profile with nulls and empty attributes', async () => {
    const user = await createTestUser(service);
    const res = await admin().get(`/admin/users/${user.id}`);
    expect(res.body).toMatchObject({ email: null, email_verified: false, name: null, attributes: {} });
  });

  it('makes a changed email unverified unless the change says otherwise, and clears with null', async () => {
    const user = await createTestUser(service);
    const set = await admin().patch(`/admin/users/${user.id}`, { email: `${user.username}@example.org`, email_verified: true, name: 'Pat' });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ email: `${user.username}@example.org`, email_verified: true, name: 'Pat' });
    const changed = await admin().patch(`/admin/users/${user.id}`, { email: `${user.username}@example.net` });
    expect(changed.body).toMatchObject({ email: `${user.username}@example.net`, email_verified: false, name: 'Pat' });
    const reverified = await admin().patch(`/admin/users/${user.id}`, { email_verified: true });
    expect(reverified.body).toMatchObject({ email_verified: true });
    const cleared = await admin().patch(`/admin/users/${user.id}`, { email: null, name: null });
    expect(cleared.body).toMatchObject({ email: null, email_verified: false, name: null });
  });

  it('refuses an email that is not one, leaving the user as it was', async () => {
    const user = await createTestUser(service);
    for (const email of ['not-an-email', 'a@b', 'two@@example.com', '.dot@example.com', 'a b@example.com', '"q"@example.com', 'x@[127.0.0.1]', `${'a'.repeat(65)}@example.com`]) {
      const res = await admin().patch(`/admin/users/${user.id}`, { email, scopes: ['orders:read'] });
      expect(res.status, email).toBe(400);
      expect(res.body, email).toEqual(invalid('the email is not a valid address (local-part@domain.example)'));
    }
    const created = await admin().post('/admin/users', { username: uniqueName('bad'), email: 'nope' });
    expect(created.body).toEqual(invalid('the email is not a valid address (local-part@domain.example)'));
    expect(await rowOf(user.id)).toEqual({ email: null, email_verified: false, name: null, attributes: {} });
    expect((await admin().get(`/admin/users/${user.id}`)).body.scopes).toEqual([]);
  });

  it('refuses an email another user has, in any case: 409, nothing written', async () => {
    const first = await createTestUser(service);
    const second = await createTestUser(service);
    const email = `${first.username}@example.com`;
    expect((await admin().patch(`/admin/users/${first.id}`, { email })).status).toBe(200);
    const res = await admin().patch(`/admin/users/${second.id}`, { email: email.toUpperCase().replace('EXAMPLE.COM', 'example.com'), name: 'Second' });
    expect(res.status).toBe(409);
    expect(res.body).toEqual(invalid('another user has this email'));
    expect(await rowOf(second.id)).toEqual({ email: null, email_verified: false, name: null, attributes: {} });
    const username = uniqueName('dup');
    const created = await admin().post('/admin/users', { username, email: ` ${email} ` });
    expect(created.status).toBe(409);
    expect(created.body).toEqual(invalid('another user has this email'));
    expect(await database.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst()).toBeUndefined();
  });

  it('refuses attributes that are not an object, too big, too deep or oddly named', async () => {
    const user = await createTestUser(service);
    const cases: [unknown, string][] = [
      [['a'], 'the field attributes must be a JSON object'],
      ['tenant', 'the field attributes must be a JSON object'],
      [null, 'the field attributes must be a JSON object'],
      [{ big: 'x'.repeat(4090) }, 'attributes take at most 4096 bytes as JSON'],
      [{ a: { b: { c: { d: { e: { f: 1 } } } } } }, 'attributes nest at most 5 levels deep'],
      [{ 'has space': 1 }, 'attribute names are 1 to 64 letters, digits, _ or -'],
      [{ ok: { 'a.b': 1 } }, 'attribute names are 1 to 64 letters, digits, _ or -'],
      // They reach JavaScript resource servers in tokens, where a deep merge would pollute Object.prototype.
      [JSON.parse('{"__proto__": {"admin": true}}'), 'an attribute cannot be named __proto__, constructor or prototype'],
      [{ org: JSON.parse('{"__proto__": {"admin": true}}') }, 'an attribute cannot be named __proto__, constructor or prototype'],
      [{ org: { constructor: { prototype: { admin: true } } } }, 'an attribute cannot be named __proto__, constructor or prototype'],
    ];
    for (const [attributes, description] of cases) {
      const res = await admin().patch(`/admin/users/${user.id}`, { attributes, name: 'Changed' });
      expect(res.status, description).toBe(400);
      expect(res.body, description).toEqual(invalid(description));
    }
    expect(await rowOf(user.id)).toEqual({ email: null, email_verified: false, name: null, attributes: {} });
    // Exactly 4096 bytes is allowed: {"big":"..."} is 10 bytes around the value.
    const fits = await admin().patch(`/admin/users/${user.id}`, { attributes: { big: 'x'.repeat(4086) } });
    expect(fits.status).toBe(200);
  });

  it('refuses email_verified without an email, and a name with control characters', async () => {
    const user = await createTestUser(service);
    const verify = await admin().patch(`/admin/users/${user.id}`, { email_verified: true });
    expect(verify.status).toBe(400);
    expect(verify.body).toEqual(invalid('an email can be verified only when there is one'));
    const cleared = await admin().patch(`/admin/users/${user.id}`, { email: null, email_verified: true });
    expect(cleared.body).toEqual(invalid('an email can be verified only when there is one'));
    const name = await admin().patch(`/admin/users/${user.id}`, { name: 'a\u0007b' });
    expect(name.body).toEqual(invalid('a name has at most 200 characters and no control characters'));
    expect(await rowOf(user.id)).toEqual({ email: null, email_verified: false, name: null, attributes: {} });
  });
});

describe('/register', () => {
  it('takes an optional email and name, never verified', async () => {
    const username = uniqueName('reg');
    const res = await request(service.app)
      .post('/register')
      .type('form')
      .send({ username, password: password(), email: `${username}@Example.com`, name: 'Reggie', email_verified: 'true' });
    expect(res.status).toBe(201);
    expect(await rowOf(res.body.sub)).toEqual({ email: `${username}@example.com`, email_verified: false, name: 'Reggie', attributes: {} });
    const plain = await request(service.app).post('/register').send({ username: uniqueName('reg'), password: password(), email: '' });
    expect(plain.status).toBe(201);
    expect(await rowOf(plain.body.sub)).toMatchObject({ email: null, name: null });
  });

  it('refuses a bad email (400) and a taken one (409), creating nobody', async () => {
    const username = uniqueName('reg');
    const bad = await request(service.app).post('/register').send({ username, password: password(), email: 'nope' });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual(invalid('the email is not a valid address (local-part@domain.example)'));
    const owner = await request(service.app).post('/register').send({ username: uniqueName('reg'), password: password(), email: `${username}@example.com` });
    expect(owner.status).toBe(201);
    const taken = await request(service.app).post('/register').send({ username, password: password(), email: `${username.toUpperCase()}@example.com` });
    expect(taken.status).toBe(409);
    expect(taken.body).toEqual(invalid('this email cannot be registered'));
    expect(await database.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst()).toBeUndefined();
  });
});

describe('/userinfo', () => {
  async function userinfo(scope: string, user: { username: string; password: string }) {
    const token = (await passwordGrant(service.app, gateway, user, { scope })).body.access_token as string;
    const res = await request(service.app).get('/userinfo').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
    return res.body as Record<string, unknown>;
  }

  it('answers email and email_verified under `email`, name under `profile` (OIDC Core §5.4)', async () => {
    const user = await createTestUser(service, { scopes: ['email', 'profile', 'orders:read'] });
    await admin().patch(`/admin/users/${user.id}`, { email: `${user.username}@example.com`, email_verified: true, name: 'Una User' });

    const both = await userinfo('email profile', user);
    expect(both).toMatchObject({ sub: user.id, preferred_username: user.username, email: `${user.username}@example.com`, email_verified: true, name: 'Una User' });
    const email = await userinfo('email', user);
    expect(email).toMatchObject({ email: `${user.username}@example.com`, email_verified: true });
    expect(email).not.toHaveProperty('name');
    const profile = await userinfo('profile', user);
    expect(profile).toMatchObject({ name: 'Una User' });
    expect(profile).not.toHaveProperty('email');
    expect(profile).not.toHaveProperty('email_verified');
    const neither = await userinfo('orders:read', user);
    expect(Object.keys(neither).sort()).toEqual(['preferred_username', 'roles', 'scopes', 'sub', 'updated_at', 'username']);
  });

  it('leaves out a claim the user has no value for, rather than sending null', async () => {
    const user = await createTestUser(service, { scopes: ['email', 'profile'] });
    const body = await userinfo('email profile', user);
    expect(body).not.toHaveProperty('email');
    expect(body).not.toHaveProperty('email_verified');
    expect(body).not.toHaveProperty('name');
  });
});

describe('tessera users create and update', () => {
  it('creates a user with a profile and changes it', async () => {
    const username = uniqueName('cli');
    const created = await cli([
      'users', 'create', username, '--email', `${username}@Example.com`, '--email-verified', '--name', 'Cli User',
      '--attribute', 'tenant=acme', '--attribute', 'team=blue', '--json',
    ]);
    expect(created.code).toBe(0);
    const shown = JSON.parse(created.stdout) as { id: string };
    expect(shown).toMatchObject({ username, email: `${username}@example.com`, email_verified: true, name: 'Cli User' });
    expect(await rowOf(shown.id)).toEqual({ email: `${username}@example.com`, email_verified: true, name: 'Cli User', attributes: { tenant: 'acme', team: 'blue' } });

    const updated = await cli(['users', 'update', username, '--attribute', 'tenant=globex', '--remove-attribute', 'team', '--no-name', '--json']);
    expect(updated.code).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ email_verified: true, name: null, attributes: { tenant: 'globex' } });
    const replaced = await cli(['users', 'update', username, '--attributes-json', '{"org":{"id":7}}', '--email', `new.${username}@example.com`]);
    expect(replaced.code).toBe(0);
    expect(replaced.stdout).toContain('attributes: {"org":{"id":7}}\n');
    expect(await rowOf(shown.id)).toEqual({ email: `new.${username}@example.com`, email_verified: false, name: null, attributes: { org: { id: 7 } } });
  });

  it('refuses bad profile options before touching the database', async () => {
    const username = uniqueName('cli');
    const badEmail = await cli(['users', 'create', username, '--email', 'nope']);
    expect(badEmail).toEqual({ code: 2, stdout: '', stderr: 'error: the email is not a valid address (local-part@domain.example)\n(see tessera users create --help)\n' });
    const big = await cli(['users', 'create', username, '--attribute', `big=${'x'.repeat(5000)}`]);
    expect(big.code).toBe(2);
    expect(big.stderr).toBe('error: attributes take at most 4096 bytes as JSON\n(see tessera users create --help)\n');
    const verified = await cli(['users', 'create', username, '--email-verified']);
    expect(verified.stderr).toBe('error: --email-verified needs --email\n(see tessera users create --help)\n');
    const json = await cli(['users', 'update', username, '--attributes-json', '[1]']);
    expect(json.stderr).toBe('error: --attributes-json takes a JSON object\n(see tessera users update --help)\n');
    const both = await cli(['users', 'update', username, '--attributes-json', '{}', '--attribute', 'a=b']);
    expect(both.stderr).toBe('error: --attributes-json cannot be combined with --attribute or --remove-attribute\n(see tessera users update --help)\n');
    const nothing = await cli(['users', 'update', username]);
    expect(nothing.stderr).toBe('error: nothing to change: give --email, --name, --attribute or another option\n(see tessera users update --help)\n');
    expect(await database.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst()).toBeUndefined();
  });

  it('refuses an email another user has (exit 1), changing nothing', async () => {
    const owner = await createTestUser(service);
    const other = await createTestUser(service);
    await admin().patch(`/admin/users/${owner.id}`, { email: `${owner.username}@example.com` });
    const res = await cli(['users', 'update', other.username, '--email', `${owner.username}@EXAMPLE.com`, '--name', 'Other']);
    expect(res).toEqual({ code: 1, stdout: '', stderr: 'error: another user has this email\n' });
    expect(await rowOf(other.id)).toEqual({ email: null, email_verified: false, name: null, attributes: {} });
  });
});
