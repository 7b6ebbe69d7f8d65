import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import config from '../../vitest.config.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { findLeaks } from '../helpers/logs.js';
import { knownSecrets, noteSecret, privateKeyMaterial } from '../helpers/secrets.js';
import { createTestClient, createTestUser, startTestService, testEnv, type TestClient, type TestService, uniqueName } from '../helpers/service.js';
import { type FlowSecrets, runRealisticFlow } from './flow.js';

/**
 * ATTACKS.md F: injection and logs. F1 sends SQL metacharacters in every field Tessera reads; F2
 * a username that carries a fake log line; F3 proves the suite-wide log check (test/logs.setup.ts,
 * run after every test file) finds what it is meant to find, and that a realistic run is clean.
 */

let database: TestDatabase;
let service: TestService;
let client: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;
let adminToken: string;
/** A live session from before the attacks: it must survive every one of them. */
let session: { access_token: string; refresh_token: string };

beforeAll(async () => {
  database = await createTestDatabase();
  // Open registration: /register is one more endpoint that reads a username and a password.
  service = await startTestService(database, { env: testEnv(database, { REGISTRATION: 'open' }) });
  client = await createTestClient(service, { grantTypes: ['password', 'refresh_token', 'client_credentials'], scopes: ['profile', 'admin'] });
  user = await createTestUser(service, { scopes: ['profile'] });
  const admin = await createTestUser(service, { scopes: ['admin'] });
  adminToken = (await login(admin.username, admin.password, 'admin')).body.access_token;
  session = (await login(user.username, user.password)).body;
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

const app = () => request(service.app);
const login = (username: string, password: string, scope?: string) =>
  app()
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'password', username, password, ...(scope ? { scope } : {}) });
const asAdmin = (req: request.Test) => req.set('Authorization', `Bearer ${adminToken}`);

const error = (code: string, description: string) => ({ error: code, error_description: description });
const WRONG_PASSWORD = error('invalid_grant', 'the username or password is incorrect');
const BAD_REFRESH = error('invalid_grant', 'the refresh token is invalid, expired or revoked');
const BAD_CLIENT = error('invalid_client', 'client authentication failed');
const invalidRequest = (description: string) => error('invalid_request', description);
/** A password the policy accepts, sent by F1 and F2. Noted here, so that F3 knows it whichever tests ran before. */
const PASSPHRASE = 'a perfectly fine passphrase';
noteSecret('password (F1, F2)', PASSPHRASE);

describe('F1 SQL metacharacters in every field', () => {
  const PAYLOADS = ["' OR 1=1--", '"; DROP TABLE users;--', '\\', '%', '_'];
  /** Scope tokens (RFC 6749 §3.3) exclude `"` and `\`: those payloads are malformed, the rest merely not allowed. */
  const scopeError = (payload: string) =>
    /["\\]/.test(payload)
      ? error('invalid_scope', 'the scope parameter is malformed')
      : error('invalid_scope', 'the requested scope is not allowed for this user or client');
  /** RFC 6750 §2.1: `_` is a b64token (so it is verified, and fails); the others do not even parse. */
  const bearerError = (payload: string) =>
    /^[A-Za-z0-9._~+/-]+=*$/.test(payload)
      ? error('invalid_token', 'the access token is not valid')
      : error('invalid_token', 'the Authorization header is not a bearer token');
  /** Usernames have no spaces: two payloads are refused, the others are usernames like any other. */
  const hasSpace = (payload: string) => payload.includes(' ');

  type Answer = { status: number; body: unknown };
  const always = (status: number, body: unknown) => (): Answer => ({ status, body });
  /** A form POST as the file's confidential client (Basic), unless `authorization` says otherwise (null: none). */
  const post = (path: string, body: Record<string, string | undefined>, authorization: string | null = client.basic) => {
    const req = app().post(path).type('form');
    return (authorization === null ? req : req.set('Authorization', authorization)).send(body);
  };
  const basicWithId = (id: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(client.secret!)}`).toString('base64')}`;
  const bearer = (req: request.Test) => req.set('Authorization', `Bearer ${session.access_token}`);
  const UNKNOWN_TOKEN = 'A'.repeat(43); // well-formed, issued to nobody

  const FIELDS: [string, (payload: string) => request.Test, (payload: string) => Answer][] = [
    ['username at /token', (p) => login(p, user.password), always(400, WRONG_PASSWORD)],
    ['password at /token', (p) => login(user.username, p), always(400, WRONG_PASSWORD)],
    ['scope at /token', (p) => login(user.username, user.password, p), (p) => ({ status: 400, body: scopeError(p) })],
    ['grant_type at /token', (p) => post('/token', { grant_type: p }), always(400, error('unsupported_grant_type', 'this grant_type is not supported'))],
    ['client_id at /token', (p) => post('/token', { grant_type: 'client_credentials', client_id: p, client_secret: client.secret }, null), always(401, BAD_CLIENT)],
    ['client_secret at /token', (p) => post('/token', { grant_type: 'client_credentials', client_id: client.id, client_secret: p }, null), always(401, BAD_CLIENT)],
    ['the client id of Basic credentials', (p) => post('/token', { grant_type: 'client_credentials' }, basicWithId(p)), always(401, BAD_CLIENT)],
    ['refresh_token at /token', (p) => post('/token', { grant_type: 'refresh_token', refresh_token: p }), always(400, BAD_REFRESH)],
    ['refresh_token at /refresh (JSON)', (p) => app().post('/refresh').set('Authorization', client.basic).send({ refresh_token: p }), always(400, BAD_REFRESH)],
    ['token at /revoke', (p) => post('/revoke', { token: p }), always(200, {})],
    ['token_type_hint at /revoke', (p) => post('/revoke', { token: UNKNOWN_TOKEN, token_type_hint: p }), always(200, {})],
    ['client_id at /revoke', (p) => post('/revoke', { token: session.refresh_token, client_id: p, client_secret: client.secret }, null), always(401, BAD_CLIENT)],
    ['token at /introspect', (p) => post('/introspect', { token: p }), always(200, { active: false })],
    ['client_secret at /introspect', (p) => post('/introspect', { token: session.refresh_token, client_id: client.id, client_secret: p }, null), always(401, BAD_CLIENT)],
    ['the bearer token at /userinfo', (p) => app().get('/userinfo').set('Authorization', `Bearer ${p}`), (p) => ({ status: 401, body: bearerError(p) })],
    [
      'current_password at /users/me/password',
      (p) => bearer(app().post('/users/me/password')).send({ current_password: p, new_password: 'a brand new passphrase' }),
      always(400, invalidRequest('the current password is incorrect')),
    ],
    [
      'username at /register',
      (p) => app().post('/register').send({ username: p, password: PASSPHRASE }),
      (p) =>
        hasSpace(p)
          ? { status: 400, body: invalidRequest('the username must have 1 to 64 characters, no spaces or control characters') }
          : { status: 201, body: { sub: expect.any(String), username: p } },
    ],
    ['a user id in an admin path', (p) => asAdmin(app().get(`/admin/users/${encodeURIComponent(p)}`)), always(404, invalidRequest('no such user'))],
    ['a session id in an admin path', (p) => asAdmin(app().delete(`/admin/users/${user.id}/sessions/${encodeURIComponent(p)}`)), always(404, invalidRequest('no such session'))],
    ['a client id in an admin path', (p) => asAdmin(app().get(`/admin/clients/${encodeURIComponent(p)}`)), always(404, invalidRequest('no such client'))],
    ['a role name in an admin path', (p) => asAdmin(app().get(`/admin/roles/${encodeURIComponent(p)}`)), always(404, invalidRequest('no such role'))],
    // Descriptions show only RFC 6749 §5.2 characters: `"` and `\` become `?`.
    ['a role of an admin user update', (p) => asAdmin(app().patch(`/admin/users/${user.id}`)).send({ roles: [p] }), (p) => ({ status: 400, body: invalidRequest(`no such role: ${p.replace(/["\\]/g, '?')}`) })],
  ];

  // Each attack is checked for the damage it could do to the database and the live session, by
  // itself: a payload that dropped a table or revoked a family fails its own test.
  it.each(FIELDS.flatMap(([field, send, answer]) => PAYLOADS.map((payload) => [payload, field, send, answer] as const)))(
    'F1 %j in %s: an ordinary OAuth answer, never a 500, and the database intact',
    async (payload, _field, send, answer) => {
      const before = await snapshot();
      const res = await send(payload);
      const expected = answer(payload);
      expect({ status: res.status, body: res.body }).toEqual(expected);
      await expectIntact(before, expected.status === 201 ? [payload] : []);
    },
  );

  it('F1 the admin user search takes %, _ and \\ literally: no pattern matches every user', async () => {
    // A user whose name holds each payload that a username can hold, so each search has something to find.
    for (const payload of PAYLOADS.filter((each) => !hasSpace(each))) await createTestUser(service, { username: `${uniqueName('search')}${payload}` });
    const all = (await database.db.selectFrom('users').select('username').execute()).map((row) => row.username);
    // Most usernames hold none of the payloads: a search that took `%` or `_` as a wildcard would return them.
    expect(all.filter((username) => !PAYLOADS.some((payload) => username.includes(payload))).length).toBeGreaterThanOrEqual(2);
    for (const payload of PAYLOADS) {
      const res = await asAdmin(app().get('/admin/users').query({ search: payload, limit: '100' }));
      expect(res.status).toBe(200);
      const found = (res.body.items as { username: string }[]).map((item) => item.username);
      expect(found.sort()).toEqual(all.filter((username) => username.includes(payload)).sort());
    }
  });

  /** Every table, every earlier row and the live session as they were; the only new users are `registered`, named exactly as sent. */
  async function expectIntact(before: Snapshot, registered: string[]): Promise<void> {
    const after = await snapshot();
    expect(after.tables).toEqual(before.tables);
    expect(after.clients).toEqual(before.clients);
    expect(after.keys).toEqual(before.keys);
    expect(after.users.filter((row) => before.users.some((old) => old.id === row.id))).toEqual(before.users);
    expect(after.users.filter((row) => !before.users.some((old) => old.id === row.id)).map((row) => row.username)).toEqual(registered);
    expect(after.families).toEqual(before.families);
    const live = await post('/introspect', { token: session.refresh_token });
    expect({ status: live.status, active: live.body.active }).toEqual({ status: 200, active: true });
  }

  interface Snapshot {
    tables: string[];
    users: { id: string; username: string; password_hash: string; disabled: boolean }[];
    clients: { id: string; secret_hash: string | null }[];
    keys: { kid: string; state: string }[];
    families: { id: string; revoked_at: Date | null }[];
  }

  async function snapshot(): Promise<Snapshot> {
    const db = database.db;
    // One round of queries at once (taken before and after each of the 110 attacks).
    const [tables, users, clients, keys, families] = await Promise.all([
      sql<{ tablename: string }>`select tablename from pg_catalog.pg_tables where schemaname = current_schema() order by tablename`.execute(db),
      db.selectFrom('users').select(['id', 'username', 'password_hash', 'disabled']).orderBy('id').execute(),
      db.selectFrom('clients').select(['id', 'secret_hash']).orderBy('id').execute(),
      db.selectFrom('signing_keys').select(['kid', 'state']).orderBy('kid').execute(),
      db.selectFrom('refresh_families').select(['id', 'revoked_at']).orderBy('id').execute(),
    ]);
    return { tables: tables.rows.map((row) => row.tablename), users, clients, keys, families };
  }
});

describe('F2 a username that carries a fake log line', () => {
  /** What an attacker would like ops to read: a login as the admin that never happened. */
  const FAKE = JSON.stringify({
    level: 'info',
    time: '2026-01-01T00:00:00.000Z',
    service: 'tessera',
    audit: true,
    event: 'login_succeeded',
    msg: 'login_succeeded',
    user_id: 'admin',
  });
  const USERNAME = `mallory\n${FAKE}`;

  const account = { username: USERNAME, password: PASSPHRASE };
  it.each([
    ['the password grant (form)', (id: string) => login(USERNAME, account.password).set('X-Request-Id', id), 'username and password must not contain control characters'],
    ['/register (JSON)', (id: string) => app().post('/register').set('X-Request-Id', id).send(account), 'username and password must be short and free of control characters'],
    [
      'the admin API (JSON)',
      (id: string) => asAdmin(app().post('/admin/users').set('X-Request-Id', id)).send(account),
      'the username must have 1 to 64 characters, no spaces or control characters',
    ],
  ])('F2 at %s: refused, and the request is exactly one log line; the fake line is not a line', async (_where, send, description) => {
    const start = service.logs.lines.length;
    const id = randomUUID();
    const res = await send(id);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalidRequest(description));

    const lines = service.logs.lines.slice(start);
    expect(lines).toHaveLength(1);
    expect(() => service.logs.entries()).not.toThrow(); // every line of the log is one JSON entry
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'request completed', request_id: id, res: { status: 400 } });
    // No line of the whole log is the fake one, or starts a fake entry of its own.
    expect(service.logs.lines.filter((line) => line.includes('"user_id":"admin"'))).toEqual([]);
    expect(service.logs.entries('login_succeeded').filter((entry) => entry['user_id'] === 'admin')).toEqual([]);
  });
});

describe('F3 the suite-wide log check', () => {
  let flow: FlowSecrets;
  beforeAll(async () => {
    flow = await runRealisticFlow(service);
  });

  it('F3 runs after every test file of the suite, and fails a file whose tests pass but whose log holds a secret', async () => {
    // The suite's own configuration, on a fixture file that logs a secret it noted and passes.
    const vitest = fileURLToPath(new URL('../../node_modules/vitest/vitest.mjs', import.meta.url));
    const child = spawn(process.execPath, [vitest, 'run', '--config', 'test/fixtures/vitest.config.ts'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect({ code, tests: /Tests +1 passed/.test(output) }).toEqual({ code: 1, tests: true });
    expect(output).toContain('log lines that hold a secret (ATTACKS.md F3)');
    expect(output).toContain('client secret in captured log 1: {"level":30,"msg":"oops","detail":"secret is [client secret]"}');
    expect(config.test?.setupFiles).toContain('test/logs.setup.ts');
  });

  it('F3 knows every secret of a realistic run, and finds none of them in its logs', async () => {
    expect(await findLeaks()).toEqual([]);
    const known = knownSecrets();
    const expected = [
      ...flow.passwords,
      ...flow.refreshTokens,
      ...flow.accessTokens,
      ...flow.clientSecrets,
      ...flow.authorizations,
      ...privateKeyMaterial(service.deps.keys.current().signing.privateKey),
    ];
    expect(expected.length).toBeGreaterThan(60);
    expect(expected.filter((secret) => !known.has(secret))).toEqual([]);
  });

  /** Each kind, planted the way a careless log call would write it; the line is removed again afterwards. */
  const PLANTED: [string, () => string, (value: string) => void][] = [
    ['password', () => flow.passwords[1]!, (value) => service.deps.log.info(`login attempt with ${value}`)], // alice's, set through the admin API
    ['password (form-encoded)', () => PASSPHRASE, (value) => service.deps.log.info({ body: new URLSearchParams({ username: 'x', password: value }).toString() }, 'raw body')],
    ['wrong password', () => flow.passwords.at(-1)!, (value) => service.deps.log.warn({ attempt: value }, 'login failed')],
    ['refresh token', () => flow.refreshTokens[0]!, (value) => service.deps.log.info({ presented: value }, 'refresh')],
    ['access token', () => flow.accessTokens[0]!, (value) => service.deps.log.info({ bearer: value }, 'userinfo')],
    ['client secret', () => flow.clientSecrets.at(-1)!, (value) => service.deps.log.info(`client authenticated with ${value}`)],
    ['Authorization value', () => flow.authorizations.find((value) => value.startsWith('Basic '))!, (value) => service.deps.log.info({ headers: { auth: value } }, 'request')],
    ['private key (PEM, header renamed)', () => service.deps.keys.current().signing.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, (value) => service.deps.log.error({ key: value.replaceAll('PRIVATE KEY', 'KEY') }, 'key dump')],
    ['private key (JWK d)', () => service.deps.keys.current().signing.privateKey.export({ format: 'jwk' }).d!, (value) => service.deps.log.error({ jwk: { d: value } }, 'key dump')],
  ];

  it.each(PLANTED)('F3 a planted %s is found in a log line, so the check cannot pass vacuously', async (_kind, secret, plant) => {
    const start = service.logs.lines.length;
    plant(secret());
    expect(service.logs.lines.length).toBe(start + 1);
    try {
      const leaks = await findLeaks();
      expect(leaks.length).toBeGreaterThan(0);
      // All of them in the planted line, which the report shows with the secret masked.
      expect(new Set(leaks.map((leak) => leak.line)).size).toBe(1);
      expect(leaks[0]!.line).toContain('"level"');
      expect(leaks[0]!.line).not.toContain(secret());
    } finally {
      service.logs.lines.splice(start, 1);
    }
    expect(await findLeaks()).toEqual([]);
  });

  it.each([
    ['a PEM private key', '{"msg":"-----BEGIN RSA PRIVATE KEY-----"}'],
    ['an unredacted secret field', '{"msg":"login","password":"not one this file used"}'],
  ])('F3 %s is a leak whatever its value', async (kind, line) => {
    service.logs.lines.push(line);
    try {
      expect(await findLeaks()).toEqual([{ secret: kind, source: expect.any(String), line }]);
    } finally {
      service.logs.lines.pop();
    }
  });
});
