import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setAccountDisabled } from '../src/auth/accounts.js';
import { insertRole } from '../src/db/roles.js';
import { promotionDelaySeconds } from '../src/keys/lifecycle.js';
import { findUserScopes } from '../src/db/users.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import {
  basicAuth as basic,
  createTestClient,
  createTestUser,
  passwordGrant,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
  uniqueName,
} from './helpers/service.js';

let database: TestDatabase;
let service: TestService;
/** A confidential gateway allowed every scope these tests use, including `admin`. */
let gateway: TestClient;
let admin: Awaited<ReturnType<typeof createTestUser>>;
let adminToken: string;
let env: ReturnType<typeof testEnv>;

/** The fake clock's time, which these tests never move for good (they step forward and back). */
let NOW: string;
/** A second after NOW. */
let NOW_PLUS_1S: string;

beforeAll(async () => {
  database = await createTestDatabase();
  env = testEnv(database);
  service = await startTestService(database, { env });
  NOW = new Date(service.clock.now()).toISOString();
  NOW_PLUS_1S = new Date(service.clock.now() + 1000).toISOString();
  gateway = await createTestClient(service, { scopes: ['admin', 'profile', 'orders:read'], defaultScopes: ['profile'] });
  admin = await createTestUser(service, { roles: { administrators: ['admin'] } });
  adminToken = (await login(admin, 'admin')).access_token;
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

async function login(user: { username: string; password: string }, scope?: string, client: TestClient = gateway) {
  const res = await passwordGrant(service.app, client, user, scope ? { scope } : {});
  expect(res.status).toBe(200);
  return res.body as { access_token: string; refresh_token: string };
}

function refresh(refreshToken: string, client: TestClient = gateway) {
  return request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: refreshToken });
}

/** Every admin response body this file sees, for the check at the end that none leaks a hash or a secret. */
const responses: string[] = [];
/** Passwords and secrets shown once: each must appear in exactly one response and in no log line. */
const shownOnce: string[] = [];

type Method = 'get' | 'post' | 'patch' | 'delete' | 'put';

/** An admin API call, as the admin unless `token` says otherwise (null: no Authorization header). */
async function call(
  method: Method,
  path: string,
  options: { token?: string | null; body?: unknown; query?: Record<string, string | string[]> } = {},
): Promise<request.Response> {
  let req = request(service.app)[method](path);
  const token = options.token === undefined ? adminToken : options.token;
  if (token !== null) req = req.set('Authorization', `Bearer ${token}`);
  if (options.query) req = req.query(options.query);
  if (options.body !== undefined) req = req.send(options.body as object);
  const res = await req;
  responses.push(res.text);
  for (const name of ['password', 'client_secret']) if (typeof res.body?.[name] === 'string') shownOnce.push(res.body[name]);
  return res;
}

const invalid = (description: string) => ({ error: 'invalid_request', error_description: description });
const NO_SUCH_USER = invalid('no such user');

async function newUser(options: Parameters<typeof createTestUser>[1] = {}) {
  return createTestUser(service, options);
}

const auditEntries = (event: string, match: Record<string, unknown>) =>
  service.logs.entries(event).filter((entry) => Object.entries(match).every(([key, value]) => entry[key] === value));

describe('authorisation', () => {
  const someUuid = randomUUID();
  /** Every route, with what a valid admin gets for this request (nothing here changes anything). */
  const routes: Array<[Method, string, unknown, number]> = [
    ['post', '/admin/users', {}, 400],
    ['get', '/admin/users', undefined, 200],
    ['get', `/admin/users/${someUuid}`, undefined, 404],
    ['patch', `/admin/users/${someUuid}`, { disabled: false }, 404],
    ['delete', `/admin/users/${someUuid}`, undefined, 404],
    ['post', `/admin/users/${someUuid}/password`, undefined, 404],
    ['get', `/admin/users/${someUuid}/sessions`, undefined, 404],
    ['delete', `/admin/users/${someUuid}/sessions`, undefined, 404],
    ['delete', `/admin/users/${someUuid}/sessions/${someUuid}`, undefined, 404],
    ['post', '/admin/roles', {}, 400],
    ['get', '/admin/roles', undefined, 200],
    ['get', '/admin/roles/nosuchrole', undefined, 404],
    ['patch', '/admin/roles/nosuchrole', { description: 'x' }, 404],
    ['delete', '/admin/roles/nosuchrole', undefined, 404],
    ['post', '/admin/clients', { type: 'other' }, 400],
    ['get', '/admin/clients', undefined, 200],
    ['get', '/admin/clients/nosuchclient', undefined, 404],
    ['patch', '/admin/clients/nosuchclient', { name: 'x' }, 404],
    ['delete', '/admin/clients/nosuchclient', undefined, 404],
    ['post', '/admin/clients/nosuchclient/secret', undefined, 404],
    ['get', '/admin/keys', undefined, 200],
    ['post', '/admin/keys/rotate', { unexpected: true }, 400],
  ];

  let userToken: string;
  let adminWithoutScopeToken: string;
  let disabledAdminToken: string;
  beforeAll(async () => {
    userToken = (await login(await newUser({ scopes: ['profile'] }), 'profile')).access_token;
    // An admin whose token was not issued with `admin`: a token is only as strong as its scope.
    adminWithoutScopeToken = (await login(await newUser({ scopes: ['admin', 'profile'] }), 'profile')).access_token;
    const disabledAdmin = await newUser({ scopes: ['admin'] });
    disabledAdminToken = (await login(disabledAdmin, 'admin')).access_token;
    await setAccountDisabled(service.deps.db, disabledAdmin.id, true, new Date(service.clock.now()));
  });

  it.each(routes)('%s %s: no token is 401 with a bare Bearer challenge', async (method, path, body) => {
    const res = await call(method, path, { token: null, body });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tessera"');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ error: 'invalid_token', error_description: 'a bearer access token is required' });
  });

  it.each(routes)('%s %s: a token without admin is 403 insufficient_scope naming the scope', async (method, path, body) => {
    for (const token of [userToken, adminWithoutScopeToken]) {
      const res = await call(method, path, { token, body });
      expect(res.status).toBe(403);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="tessera", error="insufficient_scope", scope="admin"');
      expect(res.body).toEqual({ error: 'insufficient_scope', error_description: 'this endpoint needs an access token with the admin scope' });
    }
  });

  it.each(routes)('%s %s: a disabled admin is 401 invalid_token', async (method, path, body) => {
    const res = await call(method, path, { token: disabledAdminToken, body });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tessera", error="invalid_token"');
    expect(res.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });
  });

  it.each(routes)('%s %s: a valid admin gets through', async (method, path, body, status) => {
    const res = await call(method, path, { body });
    expect(res.status).toBe(status);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('refuses a malformed Authorization header and a forged token', async () => {
    const basic = await request(service.app).get('/admin/users').set('Authorization', gateway.basic);
    expect(basic.status).toBe(401);
    expect(basic.body).toEqual({ error: 'invalid_token', error_description: 'the Authorization header is not a bearer token' });
    const [header, payload] = adminToken.split('.');
    const forged = await call('get', '/admin/users', { token: `${header}.${payload}.${'A'.repeat(342)}` });
    expect(forged.status).toBe(401);
    expect(forged.body.error).toBe('invalid_token');
  });

  it('takes away admin at once when the admin role is taken away, not when the token expires', async () => {
    const former = await newUser({ scopes: ['admin'] });
    const token = (await login(former, 'admin')).access_token;
    expect((await call('get', '/admin/roles', { token })).status).toBe(200);
    expect((await call('patch', `/admin/users/${former.id}`, { body: { scopes: [] } })).status).toBe(200);
    const res = await call('get', '/admin/roles', { token });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('insufficient_scope');
  });

  it('refuses a client_credentials token even with the admin scope: an admin is a person', async () => {
    const machine = await createTestClient(service, { grantTypes: ['client_credentials'], scopes: ['admin'] });
    const issued = await request(service.app).post('/token').type('form').set('Authorization', machine.basic).send({ grant_type: 'client_credentials', scope: 'admin' });
    expect(issued.status).toBe(200);
    const res = await call('get', '/admin/users', { token: issued.body.access_token });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });
  });

  it('refuses the access token of a session that has ended', async () => {
    const other = await newUser({ scopes: ['admin'] });
    const tokens = await login(other, 'admin');
    expect((await call('delete', `/admin/users/${other.id}/sessions`)).status).toBe(200);
    const res = await call('get', '/admin/users', { token: tokens.access_token });
    expect(res.status).toBe(401);
  });

  it('answers 405 with Allow for a method a path does not take, and 404 under /admin for no such path', async () => {
    const put = await call('put', '/admin/users', { body: {} });
    expect(put.status).toBe(405);
    expect(put.headers['allow']).toBe('GET, HEAD, POST');
    expect(put.body).toEqual(invalid('this endpoint accepts GET, HEAD, POST only'));
    const rotate = await call('get', '/admin/keys/rotate');
    expect(rotate.status).toBe(405);
    expect(rotate.headers['allow']).toBe('POST');
    const missing = await call('get', '/admin/nothing');
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual(invalid('there is no such endpoint'));
  });
});

describe('input validation', () => {
  it.each<[string, unknown, string]>([
    ['an unknown field', { username: 'valid1', scope: 'profile' }, 'unknown field: scope'],
    ['a missing username', { password: 'a long passphrase' }, 'the field username is required'],
    ['a number for a string', { username: 42 }, 'the field username must be a string'],
    ['a string for a list', { username: 'valid2', scopes: 'profile' }, 'the field scopes must be an array of strings'],
    ['a list with a non-string', { username: 'valid3', roles: ['a', 1] }, 'the field roles must be an array of strings'],
    ['null', { username: 'valid4', scopes: null }, 'the field scopes must be an array of strings'],
    ['an array body', ['username'], 'the request body must be a JSON object'],
    ['a too-long list', { username: 'valid5', scopes: Array.from({ length: 101 }, (_, i) => `s${i}`) }, 'the field scopes has more than 100 items'],
    ['a too-long string', { username: 'x'.repeat(1025) }, 'the field username is too long'],
  ])('POST /admin/users refuses %s with a 400 naming the field', async (_what, body, description) => {
    const res = await call('post', '/admin/users', { body });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalid(description));
  });

  it('refuses a wrong type in a PATCH, and a PATCH that changes nothing', async () => {
    const user = await newUser();
    expect((await call('patch', `/admin/users/${user.id}`, { body: { disabled: 'yes' } })).body).toEqual(invalid('the field disabled must be true or false'));
    expect((await call('patch', `/admin/users/${user.id}`, { body: {} })).body).toEqual(invalid('the request names nothing to change'));
    expect((await call('patch', `/admin/users/${user.id}`, { body: { username: 'renamed' } })).body).toEqual(invalid('unknown field: username'));
  });

  it('refuses a body that is not JSON (415), malformed JSON and repeated members (400)', async () => {
    const form = await request(service.app).post('/admin/users').set('Authorization', `Bearer ${adminToken}`).type('form').send('username=eve');
    expect(form.status).toBe(415);
    expect(form.body).toEqual(invalid('the request body must be application/json'));
    const broken = await request(service.app).post('/admin/users').set('Authorization', `Bearer ${adminToken}`).type('json').send('{"username":');
    expect(broken.status).toBe(400);
    expect(broken.body).toEqual(invalid('the request body could not be read'));
    const repeated = await request(service.app).post('/admin/users').set('Authorization', `Bearer ${adminToken}`).type('json').send('{"username":"a1","username":"b1"}');
    expect(repeated.status).toBe(400);
    expect(repeated.body).toEqual(invalid('a parameter is repeated'));
  });

  it('does not let __proto__ or constructor through as fields', async () => {
    const proto = await request(service.app).post('/admin/roles').set('Authorization', `Bearer ${adminToken}`).type('json').send('{"name":"protorole","__proto__":{"x":1}}');
    expect(proto.status).toBe(400);
    expect(proto.body).toEqual(invalid('unknown field: __proto__'));
    const ctor = await call('post', '/admin/roles', { body: { name: 'ctorrole', constructor: 'x' } });
    expect(ctor.body).toEqual(invalid('unknown field: constructor'));
  });

  it('never answers 500 to a hostile id or name in the path', async () => {
    for (const path of ['/admin/users/not-a-uuid', '/admin/users/%00', `/admin/users/${randomUUID()}x`, '/admin/users/%E2%80%AE']) {
      const res = await call('get', path);
      expect(res.status).toBe(404);
      expect(res.body).toEqual(NO_SUCH_USER);
    }
    for (const path of ['/admin/clients/%00', `/admin/clients/${randomUUID()}`, '/admin/clients/a%22b']) {
      const res = await call('get', path);
      expect(res.status).toBe(404);
      expect(res.body).toEqual(invalid('no such client'));
    }
    for (const path of ['/admin/roles/%00', '/admin/roles/a%22b%5Cc']) {
      const res = await call('delete', path);
      expect(res.status).toBe(404);
      expect(res.body).toEqual(invalid('no such role'));
    }
  });

  it('keeps descriptions within RFC 6749 §5.2: a quoted scope comes back as ?', async () => {
    const res = await call('post', '/admin/roles', { body: { name: 'quoted', scopes: ['ok', 'bad"scope\\'] } });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalid('not a valid scope: bad?scope?'));
  });
});

describe('users', () => {
  it('creates a user with a password, scopes and roles: 201, Location, never the hash; the user can log in', async () => {
    await insertRole(service.deps.db, 'support', '').catch(() => undefined); // another test may have made it
    const res = await call('post', '/admin/users', {
      body: { username: 'Zoë', password: 'a perfectly fine passphrase', scopes: ['profile', 'orders:read', 'profile'], roles: ['support'] },
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      username: 'zoë',
      disabled: false,
      roles: ['support'],
      scopes: ['orders:read', 'profile'],
      created_at: NOW,
      updated_at: NOW,
      password_changed_at: NOW,
      email: null,
      email_verified: false,
      name: null,
      attributes: {},
    });
    expect(res.headers['location']).toBe(`/admin/users/${res.body.id}`);
    const tokens = await login({ username: 'ZOË', password: 'a perfectly fine passphrase' }, 'profile orders:read');
    expect(decodeJwt(tokens.access_token).sub).toBe(res.body.id);
    expect(auditEntries('user_created', { user_id: res.body.id })).toEqual([
      expect.objectContaining({ actor: admin.id, ip: expect.any(String), scopes: ['orders:read', 'profile'], roles: ['support'] }),
    ]);
  });

  it('generates a password when none is given and returns it once', async () => {
    const res = await call('post', '/admin/users', { body: { username: 'generated1' } });
    expect(res.status).toBe(201);
    expect(res.body.password).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Object.keys(res.body).sort()).toEqual(['attributes', 'created_at', 'disabled', 'email', 'email_verified', 'id', 'name', 'password', 'password_changed_at', 'roles', 'scopes', 'updated_at', 'username']);
    await login({ username: 'generated1', password: res.body.password });
    const again = await call('get', `/admin/users/${res.body.id}`);
    expect(again.body.password).toBeUndefined();
  });

  it.each<[string, Record<string, unknown>, number, string]>([
    ['a username with a space', { username: 'two words' }, 400, 'the username must have 1 to 64 characters, no spaces or control characters'],
    ['a common password', { username: 'weakling', password: 'password123' }, 400, 'the password is too common; choose another'],
    ['the username as password', { username: 'samesame1', password: 'SameSame1' }, 400, 'the password must not be the username'],
    ['a malformed scope', { username: 'scoped1', scopes: ['a b'] }, 400, 'not a valid scope: a b'],
    ['an unknown role', { username: 'roled1', roles: ['nosuchrole', 'support'] }, 400, 'no such role: nosuchrole'],
  ])('refuses %s under the account rules, creating nothing', async (_what, body, status, description) => {
    await insertRole(service.deps.db, 'support', '').catch(() => undefined);
    const res = await call('post', '/admin/users', { body });
    expect(res.status).toBe(status);
    expect(res.body).toEqual(invalid(description));
    const username = String(body['username']);
    expect(await service.deps.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst()).toBeUndefined();
  });

  it('refuses a look-alike of an existing username with 409', async () => {
    expect((await call('post', '/admin/users', { body: { username: 'conflicted' } })).status).toBe(201);
    for (const username of ['conflicted', 'CONFLICTED', 'ｃｏｎｆｌｉｃｔｅｄ']) {
      const res = await call('post', '/admin/users', { body: { username } });
      expect(res.status).toBe(409);
      expect(res.body).toEqual(invalid('a user with this username already exists'));
    }
  });

  it('gets a user by id, with roles and direct scopes, never the hash', async () => {
    const user = await newUser({ scopes: ['profile'], roles: { [uniqueName('role')]: ['orders:read'] } });
    const res = await call('get', `/admin/users/${user.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: user.id,
      username: user.username,
      disabled: false,
      roles: [expect.stringMatching(/^role/)],
      scopes: ['profile'],
      created_at: NOW,
      updated_at: NOW,
      password_changed_at: NOW,
      email: null,
      email_verified: false,
      name: null,
      attributes: {},
    });
    expect((await call('get', `/admin/users/${randomUUID()}`)).body).toEqual(NO_SUCH_USER);
  });

  it('replaces scopes and roles with PATCH, and moves updated_at', async () => {
    const [roleA, roleB] = [uniqueName('ra'), uniqueName('rb')];
    const user = await newUser({ scopes: ['profile'], roles: { [roleA]: ['orders:read'] } });
    await insertRole(service.deps.db, roleB, '');
    service.clock.advance(1000);
    const res = await call('patch', `/admin/users/${user.id}`, { body: { scopes: ['orders:write'], roles: [roleB] } });
    service.clock.advance(-1000);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: user.id, roles: [roleB], scopes: ['orders:write'], updated_at: NOW_PLUS_1S, created_at: NOW });
    expect(await findUserScopes(service.deps.db, user.id)).toEqual(['orders:write']);
    expect(auditEntries('user_updated', { user_id: user.id })).toEqual([
      expect.objectContaining({ actor: admin.id, scopes: ['orders:write'], roles: [roleB] }),
    ]);
    const unknown = await call('patch', `/admin/users/${user.id}`, { body: { roles: ['nosuchrole'] } });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toEqual(invalid('no such role: nosuchrole'));
    // Nothing of a refused change is kept.
    expect((await call('get', `/admin/users/${user.id}`)).body.roles).toEqual([roleB]);
    expect((await call('patch', `/admin/users/${randomUUID()}`, { body: { scopes: [] } })).body).toEqual(NO_SUCH_USER);
  });

  it('disabling ends every session (the refresh token stops working); enabling does not bring them back', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const tokens = await login(user);
    const res = await call('patch', `/admin/users/${user.id}`, { body: { disabled: true } });
    expect(res.status).toBe(200);
    expect(res.body.disabled).toBe(true);
    expect(auditEntries('user_updated', { user_id: user.id })).toEqual([expect.objectContaining({ actor: admin.id, disabled: true, sessions_ended: 1 })]);
    expect((await refresh(tokens.refresh_token)).body.error).toBe('invalid_grant');
    expect((await request(service.app).get('/userinfo').set('Authorization', `Bearer ${tokens.access_token}`)).status).toBe(401);
    const enabled = await call('patch', `/admin/users/${user.id}`, { body: { disabled: false } });
    expect(enabled.body.disabled).toBe(false);
    expect((await refresh(tokens.refresh_token)).body.error).toBe('invalid_grant');
    await login(user);
  });

  it('refuses to let an admin disable or delete their own account (409)', async () => {
    const disable = await call('patch', `/admin/users/${admin.id}`, { body: { disabled: true } });
    expect(disable.status).toBe(409);
    expect(disable.body).toEqual(invalid('an admin cannot disable their own account'));
    const remove = await call('delete', `/admin/users/${admin.id}`);
    expect(remove.status).toBe(409);
    expect(remove.body).toEqual(invalid('an admin cannot delete their own account'));
    expect((await call('get', `/admin/users/${admin.id}`)).body.disabled).toBe(false);
  });

  it('deletes a user: 204, gone, sessions gone; a second delete is 404', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const tokens = await login(user);
    const res = await call('delete', `/admin/users/${user.id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expect((await call('get', `/admin/users/${user.id}`)).status).toBe(404);
    expect((await refresh(tokens.refresh_token)).body.error).toBe('invalid_grant');
    expect(auditEntries('user_deleted', { user_id: user.id })).toEqual([expect.objectContaining({ actor: admin.id })]);
    expect((await call('delete', `/admin/users/${user.id}`)).body).toEqual(NO_SUCH_USER);
  });

  it('resets a password to a given one: sessions end, the old password stops working', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const tokens = await login(user);
    const res = await call('post', `/admin/users/${user.id}/password`, { body: { password: 'a brand new passphrase' } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: user.id, username: user.username, sessions_ended: 1 });
    expect((await refresh(tokens.refresh_token)).body.error).toBe('invalid_grant');
    const old = await passwordGrant(service.app, gateway, user);
    expect(old.status).toBe(400);
    await login({ username: user.username, password: 'a brand new passphrase' });
    expect(auditEntries('user_updated', { user_id: user.id })).toEqual([
      expect.objectContaining({ actor: admin.id, password_changed: true, sessions_ended: 1 }),
    ]);
  });

  it('resets a password to a generated one, returned once; the policy applies to a given one', async () => {
    const user = await newUser();
    const res = await call('post', `/admin/users/${user.id}/password`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: user.id, username: user.username, sessions_ended: 0, password: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) });
    await login({ username: user.username, password: res.body.password });
    const weak = await call('post', `/admin/users/${user.id}/password`, { body: { password: 'short' } });
    expect(weak.status).toBe(400);
    expect(weak.body).toEqual(invalid('the password must have at least 8 characters'));
    expect((await call('post', `/admin/users/${randomUUID()}/password`)).body).toEqual(NO_SUCH_USER);
  });
});

describe('listing and searching users', () => {
  const prefix = 'pg';
  const names = ['pga', 'pgb', 'pgc', 'pgd', 'pge'];
  beforeAll(async () => {
    for (const username of [...names, 'pct%name', 'pctxname', 'und_score', 'undxscore', 'back\\slash', 'backxslash']) {
      await newUser({ username });
    }
  });

  async function list(query: Record<string, string | string[]>) {
    const res = await call('get', '/admin/users', { query });
    expect(res.status).toBe(200);
    return res.body as { items: Array<{ username: string }>; next_after: string | null };
  }

  it('pages through users in username order, bounded by limit, until next_after is null', async () => {
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const body = await list({ search: prefix, limit: '2', ...(after ? { after } : {}) });
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items.map((item) => item.username));
      if (body.next_after === null) break;
      expect(body.next_after).toBe(body.items[1]!.username);
      after = body.next_after;
    }
    expect(seen).toEqual(names);
    // A page exactly at the end says so: no empty extra page.
    expect((await list({ search: prefix, limit: '5' })).next_after).toBeNull();
    expect((await list({ search: prefix, limit: '4' })).next_after).toBe('pgd');
  });

  it('has a default page of 50 and a maximum of 100', async () => {
    for (let i = 0; i < 50; i++) await newUser({ username: `bulk${String(i).padStart(2, '0')}` });
    const first = await list({});
    expect(first.items).toHaveLength(50);
    expect(first.next_after).toBe(first.items[49]!.username);
    expect((await list({ limit: '100' })).items.length).toBeGreaterThan(50);
  });

  it.each([['0'], ['101'], ['-1'], ['abc'], ['1.5'], ['1e2'], [''], ['0050']])('refuses limit=%j', async (limit) => {
    const res = await call('get', '/admin/users', { query: { limit } });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalid('limit must be an integer from 1 to 100'));
  });

  it('refuses unknown and repeated query parameters and a bad cursor or search', async () => {
    expect((await call('get', '/admin/users', { query: { page: '2' } })).body).toEqual(invalid('unknown query parameter: page'));
    expect((await call('get', '/admin/users', { query: { limit: ['1', '2'] } })).body).toEqual(invalid('the query parameter limit is repeated or malformed'));
    expect((await call('get', '/admin/users', { query: { after: 'a\u0000b' } })).body).toEqual(invalid('after must be the next_after of a previous page'));
    expect((await call('get', '/admin/users', { query: { search: 'x'.repeat(65) } })).body).toEqual(
      invalid('search must be at most 64 characters without control characters'),
    );
    expect((await call('get', '/admin/users', { query: { search: 'a\u0007' } })).status).toBe(400);
  });

  it('searches by substring of the normalised username, case- and width-insensitively', async () => {
    expect((await list({ search: 'gc' })).items.map((item) => item.username)).toEqual(['pgc']);
    expect((await list({ search: 'PGD' })).items.map((item) => item.username)).toEqual(['pgd']);
    expect((await list({ search: 'ｐｇｅ' })).items.map((item) => item.username)).toEqual(['pge']);
    expect((await list({ search: 'no-such-user-anywhere' })).items).toEqual([]);
  });

  it('takes %, _ and \\ in a search literally, not as LIKE wildcards', async () => {
    expect((await list({ search: 'pct%' })).items.map((item) => item.username)).toEqual(['pct%name']);
    expect((await list({ search: '%' })).items.map((item) => item.username)).toEqual(['pct%name']);
    expect((await list({ search: 'und_s' })).items.map((item) => item.username)).toEqual(['und_score']);
    expect((await list({ search: '_' })).items.map((item) => item.username)).toEqual(['und_score']);
    expect((await list({ search: 'k\\s' })).items.map((item) => item.username)).toEqual(['back\\slash']);
  });
});

describe('sessions', () => {
  it('lists a user\'s sessions (refresh families) newest first, paged, without tokens', async () => {
    const user = await newUser({ scopes: ['profile', 'orders:read'] });
    await login(user, 'profile');
    service.clock.advance(60_000);
    await login(user, 'profile orders:read');
    await login(user, 'profile');
    service.clock.advance(-60_000);
    const families = await service.deps.db.selectFrom('refresh_families').selectAll().where('user_id', '=', user.id).execute();
    const expected = families
      .sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : -1))
      .map((family) => ({
        id: family.id,
        user_id: user.id,
        client_id: gateway.id,
        scope: family.scope.join(' '),
        created_at: family.created_at.toISOString(),
        last_used_at: family.last_used_at.toISOString(),
        expires_at: family.expires_at.toISOString(),
        revoked_at: null,
        revoked_reason: null,
      }));
    const all = await call('get', `/admin/users/${user.id}/sessions`);
    expect(all.status).toBe(200);
    expect(all.body).toEqual({ items: expected, next_cursor: null, next_after: null });
    expect(expected[2]!.created_at).toBe(NOW);
    // REFRESH_TOKEN_ABSOLUTE_TTL (90 days) after the newest login, a minute after NOW.
    expect(expected[0]!.expires_at).toBe(new Date(Date.parse(NOW) + 60_000 + 90 * 86_400_000).toISOString());

    // Two families share a created_at: paging one at a time still visits each exactly once.
    const seen: unknown[] = [];
    let after: string | null | undefined;
    do {
      const res = await call('get', `/admin/users/${user.id}/sessions`, { query: { limit: '1', ...(after ? { after } : {}) } });
      seen.push(...res.body.items);
      after = res.body.next_after;
    } while (after);
    expect(seen).toEqual(expected);

    expect((await call('get', `/admin/users/${user.id}/sessions`, { query: { after: 'nope' } })).body).toEqual(
      invalid('after must be the next_after of a previous page'),
    );
    expect((await call('get', `/admin/users/${user.id}/sessions`, { query: { limit: '101' } })).status).toBe(400);
  });

  it('ends one session: its refresh token and access token stop working, the others do not', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const first = await login(user);
    const second = await login(user);
    const sid = decodeJwt(first.access_token).sid as string;
    const res = await call('delete', `/admin/users/${user.id}/sessions/${sid}`);
    expect(res.status).toBe(204);
    expect((await refresh(first.refresh_token)).body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    expect((await request(service.app).get('/userinfo').set('Authorization', `Bearer ${first.access_token}`)).status).toBe(401);
    expect((await refresh(second.refresh_token)).status).toBe(200);
    const listed = await call('get', `/admin/users/${user.id}/sessions`);
    expect(listed.body.items.find((item: { id: string }) => item.id === sid)).toMatchObject({ revoked_at: NOW, revoked_reason: 'admin' });
    expect(auditEntries('refresh_family_revoked', { family_id: sid })).toEqual([
      expect.objectContaining({ actor: admin.id, reason: 'admin', user_id: user.id, client_id: gateway.id }),
    ]);
    // Ending it again changes nothing and is still a success.
    expect((await call('delete', `/admin/users/${user.id}/sessions/${sid}`)).status).toBe(204);
    expect(auditEntries('refresh_family_revoked', { family_id: sid })).toHaveLength(1);
  });

  it('answers 404 for a session of another user, an unknown one and a malformed id', async () => {
    const [owner, other] = [await newUser({ scopes: ['profile'] }), await newUser()];
    const sid = decodeJwt((await login(owner)).access_token).sid as string;
    for (const path of [`/admin/users/${other.id}/sessions/${sid}`, `/admin/users/${owner.id}/sessions/${randomUUID()}`, `/admin/users/${owner.id}/sessions/x`]) {
      const res = await call('delete', path);
      expect(res.status).toBe(404);
      expect(res.body).toEqual(invalid('no such session'));
    }
    expect((await call('get', `/admin/users/${owner.id}/sessions`)).body.items[0].revoked_at).toBeNull();
  });

  it('ends every session of a user', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const tokens = [await login(user), await login(user)];
    const res = await call('delete', `/admin/users/${user.id}/sessions`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ sessions_ended: 2 });
    for (const { refresh_token } of tokens) expect((await refresh(refresh_token)).body.error).toBe('invalid_grant');
    expect(auditEntries('user_logged_out', { user_id: user.id })).toEqual([expect.objectContaining({ actor: admin.id, sessions_ended: 2 })]);
    expect((await call('delete', `/admin/users/${user.id}/sessions`)).body).toEqual({ sessions_ended: 0 });
  });
});

describe('roles', () => {
  it('creates, lists, gets, changes and deletes a role', async () => {
    const created = await call('post', '/admin/roles', { body: { name: 'billing', description: 'Billing team', scopes: ['invoices:write', 'invoices:read'] } });
    expect(created.status).toBe(201);
    expect(created.headers['location']).toBe('/admin/roles/billing');
    expect(created.body).toEqual({ name: 'billing', description: 'Billing team', scopes: ['invoices:read', 'invoices:write'] });
    expect(auditEntries('role_changed', { role: 'billing' })).toEqual([
      expect.objectContaining({ actor: admin.id, created: true, scopes: ['invoices:read', 'invoices:write'] }),
    ]);

    const listed = await call('get', '/admin/roles');
    expect(listed.status).toBe(200);
    expect(listed.body.items).toContainEqual({ name: 'billing', description: 'Billing team', scopes: ['invoices:read', 'invoices:write'] });
    expect((await call('get', '/admin/roles/billing')).body).toEqual(created.body);

    const holder = await newUser();
    expect((await call('patch', `/admin/users/${holder.id}`, { body: { roles: ['billing'] } })).status).toBe(200);
    const changed = await call('patch', '/admin/roles/billing', { body: { scopes: ['invoices:read', 'refunds'] } });
    expect(changed.status).toBe(200);
    expect(changed.body).toEqual({ name: 'billing', description: 'Billing team', scopes: ['invoices:read', 'refunds'] });
    expect(await findUserScopes(service.deps.db, holder.id)).toEqual(['invoices:read', 'refunds']);
    const described = await call('patch', '/admin/roles/billing', { body: { description: '' } });
    expect(described.body).toEqual({ name: 'billing', description: '', scopes: ['invoices:read', 'refunds'] });

    const deleted = await call('delete', '/admin/roles/billing');
    expect(deleted.status).toBe(204);
    expect(await findUserScopes(service.deps.db, holder.id)).toEqual([]);
    expect((await call('get', '/admin/roles/billing')).body).toEqual(invalid('no such role'));
    expect((await call('delete', '/admin/roles/billing')).status).toBe(404);
    expect(auditEntries('role_changed', { role: 'billing', deleted: true })).toEqual([expect.objectContaining({ actor: admin.id })]);
  });

  it.each<[Record<string, unknown>, number, string]>([
    [{ name: 'bad role' }, 400, 'a role name has 1 to 64 letters, digits or . _ : -'],
    [{ name: 'x'.repeat(65) }, 400, 'a role name has 1 to 64 letters, digits or . _ : -'],
    [{ name: 'okrole', scopes: ['a b'] }, 400, 'not a valid scope: a b'],
    [{ name: 'okrole', description: 'line\nbreak' }, 400, 'a role description has at most 500 characters and no control characters'],
    [{ name: 'administrators' }, 409, 'the role administrators already exists'],
  ])('refuses %j', async (body, status, description) => {
    const res = await call('post', '/admin/roles', { body });
    expect(res.status).toBe(status);
    expect(res.body).toEqual(invalid(description));
    expect((await call('get', '/admin/roles/okrole')).status).toBe(404);
  });

  it('refuses a bad PATCH without changing the role', async () => {
    await call('post', '/admin/roles', { body: { name: 'stable', scopes: ['a'] } });
    expect((await call('patch', '/admin/roles/stable', { body: { scopes: ['ok', 'no"pe'] } })).body).toEqual(invalid('not a valid scope: no?pe'));
    expect((await call('patch', '/admin/roles/stable', { body: { name: 'renamed' } })).body).toEqual(invalid('unknown field: name'));
    expect((await call('patch', '/admin/roles/stable', { body: {} })).body).toEqual(invalid('the request names nothing to change'));
    expect((await call('get', '/admin/roles/stable')).body).toEqual({ name: 'stable', description: '', scopes: ['a'] });
  });
});

describe('clients', () => {
  const clientCredentials = (id: string, secret: string) =>
    request(service.app).post('/token').type('form').set('Authorization', basic(id, secret)).send({ grant_type: 'client_credentials' });
  /** A public client of the test's own: its id. */
  const publicClient = async () => {
    const created = await call('post', '/admin/clients', { body: { id: uniqueName('spa'), type: 'public', grant_types: ['password', 'refresh_token'] } });
    expect(created.status).toBe(201);
    return created.body.id as string;
  };

  it('registers a confidential client, shows its secret once, and the secret works', async () => {
    const res = await call('post', '/admin/clients', {
      body: { id: 'billing-svc', name: 'Billing', grant_types: ['client_credentials'], scopes: ['invoices:read'], audience: ['https://billing.example'] },
    });
    expect(res.status).toBe(201);
    expect(res.headers['location']).toBe('/admin/clients/billing-svc');
    expect(res.body).toEqual({
      id: 'billing-svc',
      name: 'Billing',
      type: 'confidential',
      grant_types: ['client_credentials'],
      scopes: ['invoices:read'],
      default_scopes: ['invoices:read'],
      audience: ['https://billing.example'],
      rate_limit: null,
      roles_claim: false,
      token_claims: {},
      redirect_uris: [],
      post_logout_redirect_uris: [],
      created_at: NOW,
      updated_at: NOW,
      client_secret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    const issued = await clientCredentials('billing-svc', res.body.client_secret);
    expect(issued.status).toBe(200);
    expect(decodeJwt(issued.body.access_token)).toMatchObject({ sub: 'billing-svc', scope: 'invoices:read' });
    expect(auditEntries('client_created', { client_id: 'billing-svc' })).toEqual([
      expect.objectContaining({ actor: admin.id, type: 'confidential', grant_types: ['client_credentials'] }),
    ]);
    const stored = await service.deps.db.selectFrom('clients').select('secret_hash').where('id', '=', 'billing-svc').executeTakeFirstOrThrow();
    expect(stored.secret_hash).not.toContain(res.body.client_secret);
  });

  it('registers a public client (no secret) and a confidential one with a generated id and the default grants', async () => {
    const spa = await call('post', '/admin/clients', { body: { id: 'spa', type: 'public', grant_types: ['password', 'refresh_token'], scopes: ['profile'], default_scopes: [] } });
    expect(spa.status).toBe(201);
    expect(spa.body).toMatchObject({ id: 'spa', name: 'spa', type: 'public', grant_types: ['password', 'refresh_token'], default_scopes: [] });
    expect(spa.body.client_secret).toBeUndefined();
    const generated = await call('post', '/admin/clients', {});
    expect(generated.status).toBe(201);
    expect(generated.body).toMatchObject({ id: expect.stringMatching(/^[A-Za-z0-9_-]{16}$/), type: 'confidential', grant_types: ['password', 'refresh_token'], scopes: [] });
  });

  it('registers a browser client with its redirect URIs, and a PATCH replaces them', async () => {
    const web = await call('post', '/admin/clients', {
      body: {
        id: 'web-app',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: ['https://app.example.com/callback', 'http://127.0.0.1:8080/cb'],
        post_logout_redirect_uris: ['https://app.example.com/'],
      },
    });
    expect(web.status).toBe(201);
    expect(web.body).toMatchObject({
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: ['https://app.example.com/callback', 'http://127.0.0.1:8080/cb'],
      post_logout_redirect_uris: ['https://app.example.com/'],
    });
    const spa = await call('post', '/admin/clients', {
      body: { id: 'native', type: 'public', grant_types: ['authorization_code'], redirect_uris: ['com.example.app:/oauth2redirect'] },
    });
    expect(spa.status).toBe(201);
    expect(spa.body).toMatchObject({ type: 'public', redirect_uris: ['com.example.app:/oauth2redirect'], post_logout_redirect_uris: [] });
    const patched = await call('patch', '/admin/clients/web-app', { body: { redirect_uris: ['https://app.example.com/new'] } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ redirect_uris: ['https://app.example.com/new'], post_logout_redirect_uris: ['https://app.example.com/'] });
    const emptied = await call('patch', '/admin/clients/web-app', { body: { redirect_uris: [] } });
    expect(emptied.status).toBe(400);
    expect(emptied.body).toEqual(invalid('the authorization_code grant needs at least one redirect URI'));
  });

  it.each<[Record<string, unknown>, number, string]>([
    [{ grant_types: ['implicit'] }, 400, 'unknown grant type: implicit (known: password, refresh_token, client_credentials, authorization_code)'],
    [{ grant_types: [] }, 400, 'a client needs at least one grant type'],
    [{ type: 'public', grant_types: ['client_credentials'] }, 400, 'a public client cannot use client_credentials: it has no secret'],
    [{ type: 'public' }, 400, 'a public client needs its grant types named explicitly (authorization_code, refresh_token, password)'],
    [{ type: 'other' }, 400, 'the field type must be one of: confidential, public'],
    [{ scopes: ['profile'], default_scopes: ['orders:read'] }, 400, 'default scopes must be allowed scopes too: orders:read'],
    [{ scopes: ['bad"scope'] }, 400, 'not a valid scope: bad?scope'],
    [{ audience: ['has space'] }, 400, 'an audience is 1 to 255 printable characters without spaces'],
    [{ name: 'tab\there' }, 400, 'a client name has at most 200 characters and no control characters'],
    [{ id: 'has space' }, 400, 'a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid'],
    // A client id shaped like a user id would make its client_credentials tokens pass for that user's.
    [{ id: randomUUID() }, 400, 'a client id has 1 to 64 letters, digits or . _ ~ - and is not shaped like a uuid'],
    [{ client_secret: 'x'.repeat(40) }, 400, 'unknown field: client_secret'],
    [{ grant_types: ['authorization_code'] }, 400, 'the authorization_code grant needs at least one redirect URI'],
    [{ redirect_uris: ['http://app.example.com/cb'] }, 400, 'an http redirect URI must be on a loopback host (127.0.0.1, [::1], localhost); use https: http://app.example.com/cb'],
    [{ redirect_uris: ['https://app.example.com/cb#top'] }, 400, 'a redirect URI has no fragment (RFC 6749 section 3.1.2): https://app.example.com/cb#top'],
    [{ post_logout_redirect_uris: ['javascript:alert(1)'] }, 400, 'a redirect URI is https, http on a loopback host, or a native app\'s reverse-domain scheme such as com.example.app:/callback (RFC 8252 section 7.1): javascript:alert(1)'],
  ])('refuses %j under the client rules', async (body, status, description) => {
    const before = await service.deps.db.selectFrom('clients').select('id').execute();
    const res = await call('post', '/admin/clients', { body: { id: 'refused', ...body } });
    expect(res.status).toBe(status);
    expect(res.body).toEqual(invalid(description));
    expect(await service.deps.db.selectFrom('clients').select('id').execute()).toEqual(before);
  });

  it('refuses a duplicate id with 409 and keeps the existing secret', async () => {
    const first = await call('post', '/admin/clients', { body: { id: 'dup-client' } });
    const res = await call('post', '/admin/clients', { body: { id: 'dup-client' } });
    expect(res.status).toBe(409);
    expect(res.body).toEqual(invalid('a client with id dup-client already exists'));
    expect((await clientCredentials('dup-client', first.body.client_secret)).status).not.toBe(401);
  });

  it('lists and gets clients without secrets or hashes', async () => {
    const listed = await call('get', '/admin/clients');
    expect(listed.status).toBe(200);
    expect(listed.body.items).toContainEqual({
      id: gateway.id,
      name: '',
      type: 'confidential',
      grant_types: ['password', 'refresh_token'],
      scopes: ['admin', 'profile', 'orders:read'],
      default_scopes: ['profile'],
      audience: [],
      rate_limit: null,
      roles_claim: false,
      token_claims: {},
      redirect_uris: [],
      post_logout_redirect_uris: [],
      created_at: NOW,
      updated_at: NOW,
    });
    const one = await call('get', `/admin/clients/${gateway.id}`);
    expect(one.body).toEqual(listed.body.items.find((item: { id: string }) => item.id === gateway.id));
  });

  it('changes settings with PATCH under the same rules; id and type are fixed', async () => {
    await call('post', '/admin/clients', { body: { id: 'patchme', scopes: ['a', 'b'], default_scopes: ['a'] } });
    service.clock.advance(1000);
    const res = await call('patch', '/admin/clients/patchme', { body: { name: 'Patched', scopes: ['a', 'c'], audience: ['api'], grant_types: ['password'] } });
    service.clock.advance(-1000);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: 'patchme',
      name: 'Patched',
      type: 'confidential',
      grant_types: ['password'],
      scopes: ['a', 'c'],
      default_scopes: ['a'],
      audience: ['api'],
      rate_limit: null,
      roles_claim: false,
      token_claims: {},
      redirect_uris: [],
      post_logout_redirect_uris: [],
      created_at: NOW,
      updated_at: NOW_PLUS_1S,
    });
    expect(auditEntries('client_updated', { client_id: 'patchme' })).toEqual([
      expect.objectContaining({ actor: admin.id, changed: ['audience', 'grant_types', 'name', 'scopes'] }),
    ]);
    // Taking away an allowed scope that is still a default is refused, not silently narrowed.
    expect((await call('patch', '/admin/clients/patchme', { body: { scopes: ['c'] } })).body).toEqual(invalid('default scopes must be allowed scopes too: a'));
    expect((await call('patch', '/admin/clients/patchme', { body: { type: 'public' } })).body).toEqual(invalid('unknown field: type'));
    expect((await call('patch', '/admin/clients/patchme', { body: { id: 'other' } })).body).toEqual(invalid('unknown field: id'));
    expect((await call('get', '/admin/clients/patchme')).body.scopes).toEqual(['a', 'c']);
    const spa = await call('patch', `/admin/clients/${await publicClient()}`, { body: { grant_types: ['client_credentials'] } });
    expect(spa.body).toEqual(invalid('a public client cannot use client_credentials: it has no secret'));
  });

  it('rotates a secret: the new one is shown once and works, the old one stops at once', async () => {
    const created = await call('post', '/admin/clients', { body: { id: 'rotating', grant_types: ['client_credentials'] } });
    const res = await call('post', '/admin/clients/rotating/secret');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: 'rotating', client_secret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    expect(res.body.client_secret).not.toBe(created.body.client_secret);
    expect((await clientCredentials('rotating', created.body.client_secret)).status).toBe(401);
    expect((await clientCredentials('rotating', res.body.client_secret)).status).toBe(200);
    expect(auditEntries('client_secret_rotated', { client_id: 'rotating' })).toEqual([expect.objectContaining({ actor: admin.id })]);
    const supplied = await call('post', '/admin/clients/rotating/secret', { body: { client_secret: 'x'.repeat(43) } });
    expect(supplied.body).toEqual(invalid('unknown field: client_secret'));
    const spaId = await publicClient();
    const spa = await call('post', `/admin/clients/${spaId}/secret`);
    expect(spa.status).toBe(409);
    expect(spa.body).toEqual(invalid(`client ${spaId} is public and has no secret`));
  });

  it('deletes a client: its sessions end with it', async () => {
    const created = await call('post', '/admin/clients', { body: { id: 'doomed', scopes: ['profile'] } });
    const client = { ...gateway, id: 'doomed', basic: basic('doomed', created.body.client_secret) } as TestClient;
    const user = await newUser({ scopes: ['profile'] });
    const tokens = await login(user, undefined, client);
    const res = await call('delete', '/admin/clients/doomed');
    expect(res.status).toBe(204);
    expect((await refresh(tokens.refresh_token, client)).status).toBe(401);
    expect((await call('get', '/admin/clients/doomed')).status).toBe(404);
    expect((await call('delete', '/admin/clients/doomed')).body).toEqual(invalid('no such client'));
    expect(auditEntries('client_deleted', { client_id: 'doomed' })).toEqual([expect.objectContaining({ actor: admin.id })]);
  });
});

describe('signing keys', () => {
  it('lists the keys with their states and dates, never key material', async () => {
    const res = await call('get', '/admin/keys');
    expect(res.status).toBe(200);
    // Every key of the table, the active one first (a rotation test may have added a next one).
    type Item = { kid: string; state: string };
    const rows = await service.deps.db.selectFrom('signing_keys').select(['kid', 'state']).execute();
    const byKid = (a: Item, b: Item) => a.kid.localeCompare(b.kid);
    expect(res.body.items.map(({ kid, state }: Item) => ({ kid, state })).sort(byKid)).toEqual(rows.sort(byKid));
    const listed = res.body.items[0];
    expect(listed).toEqual({ kid: rows.find((row) => row.state === 'active')!.kid, state: 'active', created_at: expect.any(String), activated_at: expect.any(String), retired_at: null, next_change_at: null });
    for (const item of res.body.items) expect(Object.keys(item).sort()).toEqual(['activated_at', 'created_at', 'kid', 'next_change_at', 'retired_at', 'state']);
    // The key's times are the database's (src/keys/lifecycle.ts), not the service's clock.
    expect(listed.activated_at).toBe(listed.created_at);
  });

  it('rotates: a next key, published in the JWKS at once; a second rotation while one waits is 409', async () => {
    const res = await call('post', '/admin/keys/rotate');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      kid: expect.any(String),
      state: 'next',
      created_at: expect.any(String),
      activated_at: null,
      retired_at: null,
      next_change_at: expect.any(String),
    });
    // Decided when it was added: the promotion delay after its creation, both on the database's clock.
    expect(Date.parse(res.body.next_change_at) - Date.parse(res.body.created_at)).toBe(promotionDelaySeconds(service.config) * 1000);
    const jwks = await request(service.app).get('/.well-known/jwks.json');
    expect(jwks.body.keys.map((key: { kid: string }) => key.kid)).toContain(res.body.kid);
    expect(auditEntries('signing_key_created', { kid: res.body.kid })).toEqual([expect.objectContaining({ actor: admin.id })]);
    expect((await call('get', '/admin/keys')).body.items).toHaveLength(2);

    const again = await call('post', '/admin/keys/rotate');
    expect(again.status).toBe(409);
    expect(again.body).toEqual(invalid(`key ${res.body.kid} is already waiting to become active`));
  });
});

describe('rate limiting', () => {
  it('limits the admin API per IP in its own layer, before the token is even looked at', async () => {
    // Its own counters (prefix): the main service's admin requests from this IP must not count here.
    const limitedEnv = { ...env, CLIENT_RATE_LIMIT: '3', RATE_LIMIT_PREFIX: `${env['RATE_LIMIT_PREFIX']}limited:` };
    const limited = await startTestService(database, { env: limitedEnv, clock: service.clock });
    try {
      for (let i = 0; i < 3; i++) expect((await request(limited.app).get('/admin/roles').set('Authorization', `Bearer ${adminToken}`)).status).toBe(200);
      const res = await request(limited.app).get('/admin/roles');
      expect(res.status).toBe(429);
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
      expect(limited.logs.entries('rate_limit_tripped')).toEqual([expect.objectContaining({ layer: 'admin' })]);
    } finally {
      await limited.close();
    }
  });
});

// After every test, whatever ran before it: what the test was shown once appeared in exactly one
// response of the file and in no log line; no response of the test holds a hash or key material.
let seen = { responses: 0, shownOnce: 0 };
beforeEach(() => {
  seen = { responses: responses.length, shownOnce: shownOnce.length };
});
afterEach(() => {
  checkSecrets(responses.slice(seen.responses), shownOnce.slice(seen.shownOnce));
});

function checkSecrets(newResponses: readonly string[], newSecrets: readonly string[]) {
  for (const text of newResponses) expect(text).not.toMatch(/argon2|sha256:|password_hash|secret_hash|private|ciphertext/i);
  for (const secret of newSecrets) {
    expect(responses.filter((text) => text.includes(secret))).toHaveLength(1);
    expect(service.logs.lines.filter((line) => line.includes(secret))).toEqual([]);
  }
  const adminEvents = service.logs.entries().filter((entry) => entry['audit'] === true && entry['actor'] !== undefined);
  for (const entry of adminEvents) expect(entry['actor']).toMatch(/^[0-9a-f-]{36}$/);
}

describe('secrets', () => {
  it('every password and secret the admin API generates is tracked by the check after each test, and the check fails on a leak', async () => {
    const before = { responses: responses.length, shownOnce: shownOnce.length, audit: auditEntries('user_created', { actor: admin.id }).length };
    const user = await call('post', '/admin/users', { body: { username: uniqueName('shown') } });
    const client = await call('post', '/admin/clients', { body: {} });
    const rotated = await call('post', `/admin/clients/${client.body.id as string}/secret`);
    const reset = await call('post', `/admin/users/${user.body.id as string}/password`);
    expect([user.status, client.status, rotated.status, reset.status]).toEqual([201, 201, 200, 200]);
    expect(shownOnce.slice(before.shownOnce)).toEqual([user.body.password, client.body.client_secret, rotated.body.client_secret, reset.body.password]);
    expect(responses.length - before.responses).toBe(4);
    expect(auditEntries('user_created', { actor: admin.id })).toHaveLength(before.audit + 1);
    // The check itself: a secret shown twice, or a hash in a response, fails it.
    expect(() => checkSecrets(responses.slice(before.responses), shownOnce.slice(before.shownOnce))).not.toThrow();
    expect(() => checkSecrets(['{"secret_hash":"sha256:00"}'], [])).toThrow();
    responses.push(`again ${reset.body.password as string}`);
    expect(() => checkSecrets([], [reset.body.password])).toThrow();
    responses.pop();
  });
});

describe('review follow-ups', () => {
  it('an admin cannot take the admin scope from their own account', async () => {
    // The admin holds `admin` through the administrators role: dropping direct scopes keeps it...
    expect((await call('patch', `/admin/users/${admin.id}`, { body: { scopes: [] } })).status).toBe(200);
    // ...dropping the role would not.
    const res = await call('patch', `/admin/users/${admin.id}`, { body: { roles: [] } });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'an admin cannot take the admin scope from their own account' });
    expect((await call('get', '/admin/keys')).status).toBe(200); // still an admin
  });

  it('refused admin access is an audit event', async () => {
    const before = service.logs.entries('admin_access_denied').length;
    expect((await call('get', '/admin/users', { token: null })).status).toBe(401);
    const denied = service.logs.entries('admin_access_denied').slice(before);
    expect(denied).toEqual([expect.objectContaining({ reason: 'invalid_token', path: '/admin/users', ip: expect.any(String) })]);
  });

  it('client changes are audited with their new values', async () => {
    const created = await call('post', '/admin/clients', { body: { id: 'audited-client', grant_types: ['client_credentials'], scopes: ['reports'] } });
    expect(created.status).toBe(201);
    expect(auditEntries('client_created', { client_id: 'audited-client' })[0]).toMatchObject({ scopes: ['reports'], grant_types: ['client_credentials'] });
    const updated = await call('patch', '/admin/clients/audited-client', { body: { scopes: ['reports', 'admin'] } });
    expect(updated.status).toBe(200);
    expect(auditEntries('client_updated', { client_id: 'audited-client' })[0]).toMatchObject({ now: expect.objectContaining({ scopes: ['reports', 'admin'] }) });
  });
});

describe('admin lists: one cursor form, and the filters a console needs', () => {
  type Page<T> = { items: T[]; next_cursor: string | null };

  /** Every item of a list, a page of `limit` at a time, following next_cursor to the end. */
  async function walk<T>(path: string, query: Record<string, string>, limit: number): Promise<{ items: T[]; pages: number }> {
    const items: T[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await call('get', path, { query: { ...query, limit: String(limit), ...(cursor ? { cursor } : {}) } });
      expect(res.status).toBe(200);
      const page = res.body as Page<T>;
      expect(page.items.length).toBeLessThanOrEqual(limit);
      items.push(...page.items);
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor !== null && pages < 50);
    return { items, pages };
  }

  it('users: pages with cursor as with after, and both say where the next page starts', async () => {
    const prefix = uniqueName('cur');
    const names = ['a', 'b', 'c', 'd', 'e'].map((letter) => `${prefix}${letter}`);
    for (const username of names) await newUser({ username });
    const { items, pages } = await walk<{ username: string }>('/admin/users', { search: prefix }, 2);
    expect(items.map((item) => item.username)).toEqual(names);
    expect(pages).toBe(3);
    const first = (await call('get', '/admin/users', { query: { search: prefix, limit: '2' } })).body;
    expect(first.next_after).toBe(names[1]);
    expect(first.next_cursor).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    // The cursor is opaque: it does not read as the username.
    expect(first.next_cursor).not.toContain(names[1]);
    expect((await call('get', '/admin/users', { query: { search: prefix, after: names[1]!, cursor: first.next_cursor } })).body).toEqual(
      invalid('cursor and after cannot be given together'),
    );
  });

  it('users: filters by disabled, role and creation time', async () => {
    const prefix = uniqueName('flt');
    const role = uniqueName('console');
    await insertRole(service.deps.db, role, '');
    const early = await newUser({ username: `${prefix}early` });
    service.clock.advance(3_600_000);
    const late = await newUser({ username: `${prefix}late` });
    service.clock.advance(-3_600_000);
    await setAccountDisabled(service.deps.db, late.id, true, new Date(service.clock.now()));
    expect((await call('patch', `/admin/users/${early.id}`, { body: { roles: [role] } })).status).toBe(200);
    const names = async (query: Record<string, string>) =>
      ((await call('get', '/admin/users', { query: { search: prefix, ...query } })).body as Page<{ username: string }>).items.map((item) => item.username);
    expect(await names({ disabled: 'true' })).toEqual([`${prefix}late`]);
    expect(await names({ disabled: 'false' })).toEqual([`${prefix}early`]);
    expect(await names({ role })).toEqual([`${prefix}early`]);
    expect(await names({ created_after: NOW_PLUS_1S })).toEqual([`${prefix}late`]);
    expect(await names({ created_before: NOW_PLUS_1S })).toEqual([`${prefix}early`]);
    expect(await names({ created_after: NOW, created_before: NOW_PLUS_1S, disabled: 'false', role })).toEqual([`${prefix}early`]);
  });

  it.each([
    [{ disabled: 'yes' }, 'disabled must be true or false'],
    [{ role: 'no spaces' }, 'role must be a role name: 1 to 64 letters, digits or . _ : -'],
    [{ created_before: 'today' }, 'created_before must be an RFC 3339 time such as 2026-12-06T10:00:00Z'],
    [{ created_after: '2026-02-30' }, 'created_after must be an RFC 3339 time such as 2026-12-06T10:00:00Z'],
    [{ cursor: 'abc.def' }, 'cursor must be the next_cursor of a previous page'],
  ])('users: %o is a 400', async (query, description) => {
    const res = await call('get', '/admin/users', { query });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalid(description));
  });

  it('sessions: a user\'s and everyone\'s, by user and client, paged by cursor across equal times', async () => {
    const user = await newUser({ scopes: ['profile'] });
    const other = await createTestClient(service, { scopes: ['profile'] });
    const ours = [await login(user), await login(user), await login(user, undefined, other)];
    const sids = ours.map((tokens) => decodeJwt(tokens.access_token).sid as string);
    // All three at the same instant (the clock stands still): ties are broken by id.
    const byUser = await walk<{ id: string; user_id: string; client_id: string }>(`/admin/users/${user.id}/sessions`, {}, 1);
    expect(byUser.items.map((item) => item.id).sort()).toEqual([...sids].sort());
    expect(new Set(byUser.items.map((item) => item.user_id))).toEqual(new Set([user.id]));
    const everyone = await walk<{ id: string; user_id: string }>('/admin/sessions', { user: user.id }, 2);
    expect(everyone.items).toEqual(byUser.items);
    const ofClient = await walk<{ id: string }>('/admin/sessions', { client: other.id }, 10);
    expect(ofClient.items.map((item) => item.id)).toEqual([sids[2]]);
    const ofUserAndClient = (await call('get', `/admin/users/${user.id}/sessions`, { query: { client: gateway.id } })).body as Page<{ id: string }>;
    expect(ofUserAndClient.items.map((item) => item.id).sort()).toEqual([sids[0], sids[1]].sort());
    // A cursor of one list is not one of another.
    const usersCursor = (await call('get', '/admin/users', { query: { limit: '1' } })).body.next_cursor as string;
    expect((await call('get', '/admin/sessions', { query: { cursor: usersCursor } })).body).toEqual(invalid('cursor must be the next_cursor of a previous page'));
    expect((await call('get', '/admin/sessions', { query: { user: 'nope' } })).body).toEqual(invalid('user must be a user id'));
    expect((await call('get', '/admin/sessions', { query: { client: 'x'.repeat(65) } })).body).toEqual(
      invalid('client must be a client id: 1 to 64 characters without control characters'),
    );
    expect((await call('get', '/admin/sessions', { query: { after: sids[0]! } })).body).toEqual(invalid('unknown query parameter: after'));
  });

  it('clients: paged by cursor, filtered by grant type and type', async () => {
    const service1 = await createTestClient(service, { grantTypes: ['client_credentials'], scopes: ['profile'] });
    const spa = await createTestClient(service, { type: 'public', grantTypes: ['password'], scopes: ['profile'] });
    const { items, pages } = await walk<{ id: string; grant_types: string[]; type: string }>('/admin/clients', {}, 2);
    const ids = items.map((item) => item.id);
    expect(ids).toEqual([...ids].sort());
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining([gateway.id, service1.id, spa.id]));
    expect(pages).toBeGreaterThan(1);
    const machine = await walk<{ id: string; grant_types: string[] }>('/admin/clients', { grant_type: 'client_credentials' }, 100);
    expect(machine.items.map((item) => item.id)).toContain(service1.id);
    expect(machine.items.every((item) => item.grant_types.includes('client_credentials'))).toBe(true);
    const publics = await walk<{ id: string; type: string }>('/admin/clients', { type: 'public' }, 100);
    expect(publics.items.map((item) => item.id)).toContain(spa.id);
    expect(publics.items.every((item) => item.type === 'public')).toBe(true);
    expect((await call('get', '/admin/clients', { query: { grant_type: 'Password!' } })).body).toEqual(invalid('grant_type must be a grant type such as client_credentials'));
    expect((await call('get', '/admin/clients', { query: { type: 'secret' } })).body).toEqual(invalid('type must be confidential or public'));
    expect((await call('get', '/admin/clients', { query: { limit: '0' } })).body).toEqual(invalid('limit must be an integer from 1 to 100'));
  });

  it('roles: paged by cursor; other parameters are refused like every list', async () => {
    const prefix = uniqueName('pagedrole');
    for (let i = 0; i < 3; i++) expect((await call('post', '/admin/roles', { body: { name: `${prefix}${i}` } })).status).toBe(201);
    const { items } = await walk<{ name: string }>('/admin/roles', {}, 2);
    const names = items.map((item) => item.name);
    expect(names).toEqual([...names].sort());
    expect(names.filter((name) => name.startsWith(prefix))).toEqual([0, 1, 2].map((i) => `${prefix}${i}`));
    expect((await call('get', '/admin/roles', { query: { search: 'x' } })).body).toEqual(invalid('unknown query parameter: search'));
    expect((await call('get', '/admin/roles', { query: { cursor: 'W10.AAAAAAAAAAAAAAAAAAAAAA' } })).body).toEqual(invalid('cursor must be the next_cursor of a previous page'));
  });
});
