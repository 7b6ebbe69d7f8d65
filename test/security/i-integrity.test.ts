import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import type { Env } from '../../src/config.js';
import { maintainSigningKeys, promotionDelaySeconds, retentionSeconds } from '../../src/keys/lifecycle.js';
import { createFakeClock } from '../helpers/clock.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { ageSigningKeys, databaseNow, kidOfNewToken, makeNextKeyDue } from '../helpers/keys.js';
import { noteSecret } from '../helpers/secrets.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
  uniqueName,
} from '../helpers/service.js';
import { loginAdmin } from './flow.js';

// ATTACKS.md section I, cases I5 (signing keys), I6 and I7: defences that an attacker, or an
// accident, turns against the service itself. I5: a decision about the shared signing keys made on
// one host's clock and settings, which the other hosts do not share. I6: a body decoded one way for
// a check and another way for use. I7: an admin's change that locks that admin out.

const SECOND = 1000;
const DAY = 86_400 * SECOND;

describe('I5 signing keys on one clock, the database\'s', () => {
  let database: TestDatabase;
  /** Two replicas on clocks 400 days apart, serving with different settings. */
  let a: TestService;
  let b: TestService;
  let cliEnv: Env;
  /** The CLI's host: 5 minutes ahead of replica a, with its own (default) JWKS_MAX_AGE. */
  const cliClock = createFakeClock();

  // Each test on a database and replicas of its own: a key one test added or promoted would decide
  // what the next one sees, in another order.
  beforeEach(async () => {
    database = await createTestDatabase();
    const kek = randomBytes(32).toString('base64');
    const env = (extra: Env) => testEnv(database, { KEY_ENCRYPTION_KEYS: kek, ...extra });
    const clockA = createFakeClock();
    a = await startTestService(database, { env: env({ JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '1s' }), clock: clockA });
    b = await startTestService(database, {
      env: env({ JWKS_MAX_AGE: '2m', KEY_RELOAD_INTERVAL: '2s', ACCESS_TOKEN_TTL: '30m' }),
      clock: createFakeClock(clockA.now() + 400 * DAY),
    });
    cliClock.set(clockA.now() + 5 * 60 * SECOND);
    cliEnv = { ...env({}), LOG_LEVEL: '' };
  });
  afterEach(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  async function cli(...argv: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(argv, cliEnv, { readStdin: async () => '', stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) }, cliClock);
    expect(stderr).toBe('');
    return { code, json: JSON.parse(stdout) as unknown };
  }

  /** One tick of a replica's maintenance loop: the lifecycle, then a reload. */
  const maintain = async (replica: TestService) => {
    await maintainSigningKeys({ ...replica.deps, ring: replica.deps.keyRing });
    await replica.deps.keys.reload();
  };

  const keyRow = (state: 'next' | 'active' | 'retired') =>
    database.db.selectFrom('signing_keys').selectAll().where('state', '=', state).executeTakeFirstOrThrow();

  async function listedBy(replica: TestService) {
    const admin = await loginAdmin(replica);
    const res = await request(replica.app).get('/admin/keys').set('Authorization', admin.authorization);
    expect(res.status).toBe(200);
    return res.body.items as { kid: string; state: string; retired_at: string | null; next_change_at: string | null }[];
  }

  /** The CLI adds a next key: its kid, and the kid of the key signing until it is promoted. */
  async function rotate() {
    const first = a.deps.keys.current().signing.kid;
    expect((await cli('keys', 'rotate', '--json')).code).toBe(0);
    return { first, added: (await keyRow('next')).kid };
  }

  /** A key added by the CLI and promoted: it signs, the one before it is retired. */
  async function rotateAndPromote() {
    const keys = await rotate();
    await makeNextKeyDue(database.db);
    await maintain(a);
    await Promise.all([a.deps.keys.reload(), b.deps.keys.reload()]);
    expect((await keyRow('active')).kid).toBe(keys.added);
    return keys;
  }

  it('I5 a key added by the CLI on a clock 5 minutes off, with its own JWKS_MAX_AGE, reports the activation time the fleet uses', async () => {
    const before = await databaseNow(database.db);
    const { code, json } = await cli('keys', 'rotate', '--json');
    expect(code).toBe(0);
    const after = await databaseNow(database.db);
    const row = await keyRow('next');
    const added = row.kid;
    // What it printed is what it stored: decided once, when the key was added.
    expect(json).toEqual({ kid: row.kid, state: 'next', activates_at: row.activates_at!.toISOString() });
    // Dated by the database, not by the CLI's clock 5 minutes off (nor 1,000 days off).
    expect(row.created_at.getTime()).toBeGreaterThanOrEqual(before);
    expect(row.created_at.getTime()).toBeLessThanOrEqual(after);
    // The delay covers the largest max-age and reload interval the replicas announced (b's 2m and
    // 2s), not the CLI's own JWKS_MAX_AGE (5m by default), which no verifier ever received.
    const delay = promotionDelaySeconds(a.config, b.config);
    expect(delay).toBe(120 + 2 * 2 + 5);
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(delay * SECOND);

    // Every replica and the CLI report that same stored time.
    for (const replica of [a, b]) {
      expect((await listedBy(replica)).find((key) => key.kid === added)).toMatchObject({ state: 'next', next_change_at: row.activates_at!.toISOString() });
    }
    const listed = (await cli('keys', 'list', '--json')).json as { kid: string; next_change_at: string }[];
    expect(listed.find((key) => key.kid === added)?.next_change_at).toBe(row.activates_at!.toISOString());
  });

  it('I5 two replicas on clocks far apart promote it at the stored time, and not before', async () => {
    const { first, added } = await rotate();
    // A day later on both replicas' clocks, 30 s before the stored time on the database's: nothing.
    a.clock.advance(DAY);
    b.clock.advance(DAY);
    await ageSigningKeys(database.db, promotionDelaySeconds(a.config, b.config) - 30);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('next')).kid).toBe(added);
    expect(await kidOfNewToken(a)).toBe(first);
    expect(await kidOfNewToken(b)).toBe(first);

    // Past it: exactly one of them promotes, and both sign with the new key.
    await ageSigningKeys(database.db, 31);
    await Promise.all([maintain(a), maintain(b)]);
    await Promise.all([a.deps.keys.reload(), b.deps.keys.reload()]);
    const activations = [...a.logs.entries('signing_key_activated'), ...b.logs.entries('signing_key_activated')];
    expect(activations).toEqual([expect.objectContaining({ kid: added })]);
    const active = await keyRow('active');
    expect(active.kid).toBe(added);
    expect(active.activated_at!.getTime()).toBeGreaterThanOrEqual(active.activates_at!.getTime());
    expect(await kidOfNewToken(a)).toBe(added);
    expect(await kidOfNewToken(b)).toBe(added);
  });

  it('I5 a retired key leaves the JWKS on the database\'s clock, after the longest ACCESS_TOKEN_TTL announced', async () => {
    const { first, added } = await rotateAndPromote();
    const retired = await keyRow('retired');
    expect(retired.kid).toBe(first);
    // b issues tokens for 30 minutes: a, whose own tokens live 15, reports b's retention too.
    const retention = retentionSeconds(a.config, b.config);
    expect(retention).toBe(2 + 1800 + 5);
    const listed = (await listedBy(a)).find((key) => key.kid === first)!;
    expect(Date.parse(listed.next_change_at!) - Date.parse(listed.retired_at!)).toBe(retention * SECOND);

    // The replicas' clocks a week on change nothing; the database's time passing does.
    a.clock.advance(7 * DAY);
    b.clock.advance(7 * DAY);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('retired')).kid).toBe(first);
    await ageSigningKeys(database.db, retention - 10);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('retired')).kid).toBe(first);
    await ageSigningKeys(database.db, 11);
    await Promise.all([maintain(a), maintain(b)]);
    expect(await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'retired').execute()).toEqual([]);
    const jwks = await request(b.app).get('/.well-known/jwks.json');
    expect(jwks.body.keys.map((key: { kid: string }) => key.kid)).toEqual([added]);
  });

  it('I5 the stored delay covers the largest max-age a replica announced, while a verifier may still hold its JWKS', async () => {
    // A replica that served a 10-minute JWKS has just stopped: verifiers may hold its document.
    const gone = await startTestService(database, {
      env: testEnv(database, { KEY_ENCRYPTION_KEYS: cliEnv['KEY_ENCRYPTION_KEYS']!, JWKS_MAX_AGE: '10m', KEY_RELOAD_INTERVAL: '2s' }),
      clock: createFakeClock(),
    });
    await gone.close();
    expect((await cli('keys', 'rotate', '--json')).code).toBe(0);
    let row = await keyRow('next');
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(promotionDelaySeconds(a.config, b.config, gone.config) * SECOND);
    expect(promotionDelaySeconds(a.config, b.config, gone.config)).toBe(600 + 2 * 2 + 5);
    await makeNextKeyDue(database.db);
    await maintain(a);

    // Once no verifier can hold what it served (its last announcement is older than 2 reload
    // intervals plus its max-age or token lifetime), it no longer counts.
    await sql`update replica_settings set announced_at = announced_at - interval '1 hour' where jwks_max_age = 600`.execute(database.db);
    expect((await cli('keys', 'rotate', '--json')).code).toBe(0);
    row = await keyRow('next');
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(promotionDelaySeconds(a.config, b.config) * SECOND);
  });
});

describe('I6, I7: one service, with registration open', () => {
  let database: TestDatabase;
  let env: Env;
  let service: TestService;

  beforeAll(async () => {
    database = await createTestDatabase();
    env = testEnv(database, { REGISTRATION: 'open' });
    service = await startTestService(database, { env });
  });
  afterAll(async () => {
    await service?.close();
    await database?.drop();
  });

  const app = () => request(service.app);
  const invalid = (description: string) => ({ error: 'invalid_request', error_description: description });

  describe('I6 only UTF-8 bodies, so that no decoding can hide a repeated member', () => {
    let gateway: TestClient;
    let user: Awaited<ReturnType<typeof createTestUser>>;
    let refreshToken: string;
    let accessToken: string;
    let admin: string;

    beforeAll(async () => {
      gateway = await createTestClient(service, { scopes: ['profile'] });
      user = await createTestUser(service, { scopes: ['profile'] });
      const login = await passwordGrant(service.app, gateway, user);
      expect(login.status).toBe(200);
      refreshToken = login.body.refresh_token;
      accessToken = login.body.access_token;
      admin = (await loginAdmin(service)).authorization;
    });

    const utf16be = (text: string) => Buffer.from(text, 'utf16le').swap16();
    const utf32 = (text: string, littleEndian: boolean) => {
      const points = [...text].map((char) => char.codePointAt(0)!);
      const bytes = Buffer.alloc(points.length * 4);
      points.forEach((point, i) => (littleEndian ? bytes.writeUInt32LE(point, i * 4) : bytes.writeUInt32BE(point, i * 4)));
      return bytes;
    };
    /** Each charset a client may name, and the body encoded in it. */
    const ENCODINGS: [string, (text: string) => Buffer][] = [
      ['utf-16le', (text) => Buffer.from(text, 'utf16le')],
      ['utf-16be', utf16be],
      ['utf-16', (text) => Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(text)])],
      ['UTF-16LE', (text) => Buffer.from(text, 'utf16le')],
      ['utf-32', (text) => utf32(text, false)],
      ['utf-32le', (text) => utf32(text, true)],
      ['iso-8859-1', (text) => Buffer.from(text, 'latin1')],
      ['latin1', (text) => Buffer.from(text, 'latin1')],
    ];
    const NOT_UTF8 = invalid('the request body must be encoded in UTF-8');

    const post = (path: string, type: string, body: Buffer | string, authorization?: string) => {
      const req = app().post(path).set('Content-Type', type);
      if (authorization !== undefined) req.set('Authorization', authorization);
      return req.send(body);
    };
    const refreshWith = (type: string, body: Buffer | string) => post('/refresh', type, body, gateway.basic);
    const expectRefused = (res: request.Response, status: number, body: object) => {
      expect({ status: res.status, body: res.body }).toEqual({ status, body });
      expect(res.headers['cache-control']).toBe('no-store');
    };

    it.each(ENCODINGS)('I6 /refresh refuses JSON in %s, with a repeated member or without, before reading it (415)', async (charset, encode) => {
      const refreshed = service.logs.entries('token_refreshed').length;
      const decoy = `A${'x'.repeat(42)}`;
      const repeated = `{"refresh_token":"${decoy}","refresh_token":"${refreshToken}"}`;
      expectRefused(await refreshWith(`application/json; charset=${charset}`, encode(repeated)), 415, NOT_UTF8);
      expectRefused(await refreshWith(`application/json; charset=${charset}`, encode(`{"refresh_token":"${refreshToken}"}`)), 415, NOT_UTF8);
      expect(service.logs.entries('token_refreshed')).toHaveLength(refreshed); // nothing was consumed
    });

    it.each(ENCODINGS)('I6 /users/me/password, /register and the admin API refuse JSON in %s (415) and change nothing', async (charset, encode) => {
      const type = `application/json; charset=${charset}`;
      const wrong = `wrong-${randomBytes(6).toString('hex')}`;
      noteSecret('password (I6)', wrong);
      const change = `{"current_password":"${wrong}","current_password":"${user.password}","new_password":"${wrong}-new"}`;
      expectRefused(await post('/users/me/password', type, encode(change), `Bearer ${accessToken}`), 415, NOT_UTF8);
      const name = uniqueName('i6');
      expectRefused(await post('/register', type, encode(`{"username":"${name}","username":"admin","password":"${wrong}-reg"}`)), 415, NOT_UTF8);
      expectRefused(await post('/admin/roles', type, encode(`{"name":"${name}","name":"other","scopes":["admin"]}`), admin), 415, NOT_UTF8);
      expect(await database.db.selectFrom('users').select('id').where('username', '=', name).execute()).toEqual([]);
      expect(await database.db.selectFrom('roles').select('name').where('name', 'in', [name, 'other']).execute()).toEqual([]);
      expect(service.logs.entries('password_changed')).toEqual([]);
    });

    it('I6 a form in another charset than UTF-8 is refused too (RFC 6749 Appendix B), at /token and /refresh', async () => {
      const form = new URLSearchParams({ grant_type: 'password', username: user.username, password: user.password }).toString();
      const logins = service.logs.entries('login_succeeded').length;
      const refreshed = service.logs.entries('token_refreshed').length;
      for (const charset of ['iso-8859-1', 'ISO-8859-1', 'utf-16le']) {
        const type = `application/x-www-form-urlencoded; charset=${charset}`;
        expectRefused(await post('/token', type, Buffer.from(form, 'latin1'), gateway.basic), 415, NOT_UTF8);
        expectRefused(await refreshWith(type, Buffer.from(`refresh_token=${refreshToken}`, 'latin1')), 415, NOT_UTF8);
      }
      expect(service.logs.entries('login_succeeded')).toHaveLength(logins);
      expect(service.logs.entries('token_refreshed')).toHaveLength(refreshed);
    });

    it('I6 a body that is not a JSON object, or repeats a member at any depth, is refused in UTF-8 (400)', async () => {
      for (const body of ['["refresh_token"]', '"x"', 'null', '42']) {
        expectRefused(await refreshWith('application/json', body), 400, invalid('the request body must be a JSON object'));
      }
      expectRefused(await refreshWith('application/json', `{"refresh_token":"x","refresh_token":"${refreshToken}"}`), 400, invalid('a parameter is repeated'));
      expectRefused(await refreshWith('application/json', `\uFEFF{"refresh_token":"x","refresh_token":"${refreshToken}"}`), 400, invalid('a parameter is repeated'));
      const nested = await post('/admin/users', 'application/json', '{"username":"nested1","roles":[{"a":"1","a":"2"}]}', admin);
      expectRefused(nested, 400, invalid('a parameter is repeated'));
    });

    it('I6 UTF-8 JSON still works, with or without charset=utf-8, and with a byte order mark', async () => {
      let token = refreshToken;
      for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json; charset="UTF-8"']) {
        const res = await refreshWith(type, JSON.stringify({ refresh_token: token }));
        expect(res.status, res.text).toBe(200);
        token = res.body.refresh_token;
      }
      const bom = await refreshWith('application/json', `\uFEFF${JSON.stringify({ refresh_token: token })}`);
      expect(bom.status, bom.text).toBe(200);
      const form = await refreshWith('application/x-www-form-urlencoded; charset=utf-8', `refresh_token=${bom.body.refresh_token}`);
      expect(form.status, form.text).toBe(200);
      const created = await post('/admin/roles', 'application/json; charset=utf-8', JSON.stringify({ name: uniqueName('i6-role') }), admin);
      expect(created.status).toBe(201);
    });
  });

  describe('I7 no path lets an admin remove their own admin scope', () => {
    type Admin = { id: string; username: string; password: string; role: string | undefined; client: TestClient; token: string };

    /** An admin who holds `admin` through a role of their own (or directly), logged in through a client of their own. */
    async function newAdmin(via: 'role' | 'direct'): Promise<Admin> {
      const role = via === 'role' ? uniqueName('admins-') : undefined;
      const user = await createTestUser(service, via === 'role' ? { roles: { [role!]: ['admin', 'profile'] } } : { scopes: ['admin'] });
      const client = await createTestClient(service, { scopes: ['admin', 'profile'], defaultScopes: ['profile'] });
      const login = await passwordGrant(service.app, client, user, { scope: 'admin' });
      expect(login.status).toBe(200);
      return { id: user.id, username: user.username, password: user.password, role, client, token: login.body.access_token };
    }

    const call = (who: Admin, method: 'patch' | 'delete', path: string, body?: object) => {
      const req = app()[method](path).set('Authorization', `Bearer ${who.token}`);
      return body === undefined ? req : req.send(body);
    };
    /** Still an admin: the same token still works at /admin, and the database says so. */
    async function expectStillAdmin(who: Admin): Promise<void> {
      expect((await app().get('/admin/roles').set('Authorization', `Bearer ${who.token}`)).status).toBe(200);
    }
    const SELF = invalid('an admin cannot take the admin scope from their own account');
    const OWN_CLIENT = invalid('an admin cannot take the admin scope or its grants from the client of their own token');
    const roleScopes = async (name: string) =>
      (await database.db.selectFrom('role_scopes').select('scope').where('role_name', '=', name).orderBy('scope').execute()).map((row) => row.scope);

    it('I7 emptying the scopes of the role that makes the caller an admin is 409, and nothing changes', async () => {
      const admin = await newAdmin('role');
      for (const scopes of [[], ['profile'], ['admins']]) {
        const res = await call(admin, 'patch', `/admin/roles/${admin.role}`, { scopes });
        expect({ status: res.status, body: res.body }).toEqual({ status: 409, body: SELF });
      }
      // In one request with another change: the whole request is rolled back.
      const both = await call(admin, 'patch', `/admin/roles/${admin.role}`, { description: 'changed', scopes: [] });
      expect({ status: both.status, body: both.body }).toEqual({ status: 409, body: SELF });
      expect(await roleScopes(admin.role!)).toEqual(['admin', 'profile']);
      expect((await database.db.selectFrom('roles').select('description').where('name', '=', admin.role!).executeTakeFirstOrThrow()).description).toBe('');
      await expectStillAdmin(admin);
      // Changes that leave the admin scope are fine.
      expect((await call(admin, 'patch', `/admin/roles/${admin.role}`, { scopes: ['admin'], description: 'admins' })).status).toBe(200);
      await expectStillAdmin(admin);
    });

    it('I7 deleting the role that makes the caller an admin is 409; the role stays', async () => {
      const admin = await newAdmin('role');
      const res = await call(admin, 'delete', `/admin/roles/${admin.role}`);
      expect({ status: res.status, body: res.body }).toEqual({ status: 409, body: SELF });
      expect(await roleScopes(admin.role!)).toEqual(['admin', 'profile']);
      await expectStillAdmin(admin);
    });

    it('I7 leaving that role, or dropping a direct grant of admin, is 409; with admin kept another way it is fine', async () => {
      const byRole = await newAdmin('role');
      const leave = await call(byRole, 'patch', `/admin/users/${byRole.id}`, { roles: [] });
      expect({ status: leave.status, body: leave.body }).toEqual({ status: 409, body: SELF });
      await expectStillAdmin(byRole);

      const direct = await newAdmin('direct');
      for (const body of [{ scopes: [] }, { scopes: ['profile'] }, { scopes: [], roles: [] }]) {
        const res = await call(direct, 'patch', `/admin/users/${direct.id}`, body);
        expect({ status: res.status, body: res.body }).toEqual({ status: 409, body: SELF });
      }
      await expectStillAdmin(direct);
      // Admin through a role as well as directly: the direct grant may go.
      expect((await call(direct, 'patch', `/admin/users/${direct.id}`, { roles: [byRole.role!] })).status).toBe(200);
      expect((await call(direct, 'patch', `/admin/users/${direct.id}`, { scopes: [] })).status).toBe(200);
      await expectStillAdmin(direct);
    });

    it('I7 disabling or deleting oneself is 409', async () => {
      const admin = await newAdmin('direct');
      const disable = await call(admin, 'patch', `/admin/users/${admin.id}`, { disabled: true });
      expect({ status: disable.status, body: disable.body }).toEqual({ status: 409, body: invalid('an admin cannot disable their own account') });
      const remove = await call(admin, 'delete', `/admin/users/${admin.id}`);
      expect({ status: remove.status, body: remove.body }).toEqual({ status: 409, body: invalid('an admin cannot delete their own account') });
      await expectStillAdmin(admin);
    });

    it('I7 taking admin, or the grants that issue it, from the client of the caller\'s own token is 409', async () => {
      const admin = await newAdmin('direct');
      const path = `/admin/clients/${admin.client.id}`;
      for (const body of [{ scopes: ['profile'], default_scopes: ['profile'] }, { grant_types: ['client_credentials'] }]) {
        const res = await call(admin, 'patch', path, body);
        expect({ status: res.status, body: res.body }).toEqual({ status: 409, body: OWN_CLIENT });
      }
      const remove = await call(admin, 'delete', path);
      expect({ status: remove.status, body: remove.body }).toEqual({ status: 409, body: OWN_CLIENT });
      const client = await database.db.selectFrom('clients').selectAll().where('id', '=', admin.client.id).executeTakeFirstOrThrow();
      expect({ scopes: client.allowed_scopes, grants: client.grant_types }).toEqual({ scopes: ['admin', 'profile'], grants: ['password', 'refresh_token'] });
      // Its other settings may change, as long as it still issues the admin scope to its admin.
      expect((await call(admin, 'patch', path, { name: 'console', grant_types: ['password'] })).status).toBe(200);
      const again = await passwordGrant(service.app, admin.client, admin, { scope: 'admin' });
      expect({ status: again.status, scope: again.body.scope }).toEqual({ status: 200, scope: 'admin' });
      await expectStillAdmin(admin);
    });

    it('I7 another admin may still make those changes, and the admin they strip loses /admin at once', async () => {
      const stripped = await newAdmin('role');
      const other = await newAdmin('direct');
      expect((await call(other, 'patch', `/admin/roles/${stripped.role}`, { scopes: ['profile'] })).status).toBe(200);
      const refused = await app().get('/admin/roles').set('Authorization', `Bearer ${stripped.token}`);
      expect(refused.status).toBe(403);
      expect(refused.body).toEqual({ error: 'insufficient_scope', error_description: 'this endpoint needs an access token with the admin scope' });
      await expectStillAdmin(other);
      expect((await call(other, 'delete', `/admin/roles/${stripped.role}`)).status).toBe(204);
      expect((await call(other, 'patch', `/admin/clients/${stripped.client.id}`, { scopes: ['profile'], default_scopes: ['profile'] })).status).toBe(200);
      expect((await call(other, 'patch', `/admin/users/${stripped.id}`, { disabled: true })).status).toBe(200);
      expect((await call(other, 'delete', `/admin/users/${stripped.id}`)).status).toBe(204);
      await expectStillAdmin(other);
    });

    it('I7 the CLI, which has no acting admin, stays the way back in', async () => {
      const admin = await newAdmin('role');
      let stderr = '';
      const code = await runCli(
        ['roles', 'remove-scope', admin.role!, 'admin'],
        { ...env, LOG_LEVEL: '' },
        { readStdin: async () => '', stdout: () => undefined, stderr: (t) => (stderr += t) },
        service.clock,
      );
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      expect(await roleScopes(admin.role!)).toEqual(['profile']);
    });
  });
});
