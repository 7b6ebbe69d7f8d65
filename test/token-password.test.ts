import { decodeJwt, decodeProtectedHeader } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { createTestClient, createTestUser, recordResponses, startTestService, TEST_ISSUER, type TestService } from './helpers/service.js';

let database: TestDatabase;
let service: TestService;

beforeAll(async () => {
  database = await createTestDatabase();
  service = await startTestService(database);
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

const token = () => request(service.app).post('/token').type('form');

describe('password grant: success', () => {
  it('issues an RFC 9068 access token with the granted scope', async () => {
    const user = await createTestUser(service, { scopes: ['profile', 'orders:read'] });
    const client = await createTestClient(service, { grantTypes: ['password'] });
    const res = await token()
      .set('Authorization', client.basic)
      .send({ grant_type: 'password', username: user.username, password: user.password, scope: 'orders:read profile' });

    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'orders:read profile' });

    const header = decodeProtectedHeader(res.body.access_token);
    expect(header).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: service.deps.keys.current().signing.kid });
    const claims = decodeJwt(res.body.access_token);
    const now = Math.floor(service.clock.now() / 1000);
    expect(claims).toEqual({
      iss: TEST_ISSUER,
      sub: user.id,
      aud: TEST_ISSUER,
      client_id: client.id,
      scope: 'orders:read profile',
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      iat: now,
      exp: now + 900,
      auth_time: now,
    });
  });
});

const errorBody = (error: string, description?: string) =>
  description === undefined ? { error, error_description: expect.any(String) } : { error, error_description: description };

describe('password grant: request format (RFC 6749 §3.2)', () => {
  let client: Awaited<ReturnType<typeof createTestClient>>;
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    client = await createTestClient(service);
    user = await createTestUser(service, { scopes: ['profile'] });
  });
  const form = () => ({ grant_type: 'password', username: user.username, password: user.password });

  it.each(['get', 'put', 'delete', 'patch'] as const)('%s /token is 405 with Allow: POST', async (method) => {
    const res = await request(service.app)[method]('/token');
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('POST');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual(errorBody('invalid_request', 'this endpoint accepts POST only'));
  });

  it.each([
    ['JSON', 'application/json', JSON.stringify({ grant_type: 'password' })],
    ['text/plain', 'text/plain', 'grant_type=password'],
    ['multipart', 'multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\npassword\r\n--x--'],
  ])('a %s body is invalid_request', async (_name, type, body) => {
    const res = await request(service.app).post('/token').set('Authorization', client.basic).set('Content-Type', type).send(body);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', 'the request body must be application/x-www-form-urlencoded'));
  });

  it('a body with no content type is invalid_request', async () => {
    const res = await request(service.app).post('/token').set('Authorization', client.basic);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', 'the request body must be application/x-www-form-urlencoded'));
  });

  it('credentials in the query string are invalid_request', async () => {
    const res = await request(service.app)
      .post(`/token?password=${encodeURIComponent(user.password)}`)
      .type('form')
      .set('Authorization', client.basic)
      .send({ grant_type: 'password', username: user.username });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', 'parameters must be sent in the request body, not the URL'));
    expect(service.logs.lines.join('\n')).not.toContain(user.password);
  });

  it.each(['grant_type', 'username', 'password'])('a repeated %s is invalid_request', async (name) => {
    const body = new URLSearchParams(form());
    body.append(name, 'again');
    const res = await token().set('Authorization', client.basic).send(body.toString());
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', `the parameter ${name} is repeated`));
  });

  it.each([
    ['array-shaped', 'grant_type=password&username[]=a&username[]=b&password=x'],
    ['object-shaped', 'grant_type=password&username[$ne]=&password=x'],
  ])('%s parameters are invalid_request', async (_name, body) => {
    const res = await token().set('Authorization', client.basic).send(body);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it.each([
    ['missing grant_type', { username: 'a', password: 'b' }, 'grant_type is required'],
    ['missing username', { grant_type: 'password', password: 'b' }, 'username is required'],
    ['empty username', { grant_type: 'password', username: '', password: 'b' }, 'username is required'],
    ['whitespace username', { grant_type: 'password', username: '   ', password: 'b' }, 'username is required'],
    ['missing password', { grant_type: 'password', username: 'a' }, 'password is required'],
    ['empty password', { grant_type: 'password', username: 'a', password: '' }, 'password is required'],
    ['NUL in the username', { grant_type: 'password', username: 'a\0b', password: 'b' }, 'username and password must not contain control characters'],
    ['LF in the username', { grant_type: 'password', username: 'a\nb', password: 'b' }, 'username and password must not contain control characters'],
    ['CR in the password', { grant_type: 'password', username: 'a', password: 'pass\rword' }, 'username and password must not contain control characters'],
    ['a 1 KiB + 1 password', { grant_type: 'password', username: 'a', password: 'x'.repeat(1025) }, 'password is too long'],
  ])('%s is invalid_request', async (_name, body, description) => {
    const res = await token().set('Authorization', client.basic).send(body);
    expect(res.status).toBe(400);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
    expect(res.body).toEqual(errorBody('invalid_request', description));
  });

  it('an oversized password is refused before any hashing', async () => {
    let verifies = 0;
    const counting = { ...service.deps.passwords, verify: async (...args: [string, string]) => (verifies++, service.deps.passwords.verify(...args)) };
    const app = recordResponses((await import('../src/http/app.js')).createApp({ ...service.deps, passwords: counting }));
    const res = await request(app).post('/token').type('form').set('Authorization', client.basic).send({ ...form(), password: 'x'.repeat(100_000) });
    expect(res.status).toBe(413);
    expect(res.body).toEqual(errorBody('invalid_request', 'the request body is too large'));
    expect(verifies).toBe(0);
  });

  it('too many parameters is 413', async () => {
    const body = Array.from({ length: 40 }, (_, i) => `p${i}=x`).join('&');
    const res = await token().set('Authorization', client.basic).send(body);
    expect(res.status).toBe(413);
    expect(res.body).toEqual(errorBody('invalid_request', 'the request has too many parameters'));
  });

  it('a compressed body is refused (no decompression bombs)', async () => {
    const { gzipSync } = await import('node:zlib');
    const res = await request(service.app)
      .post('/token')
      .set('Authorization', client.basic)
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .set('Content-Encoding', 'gzip')
      .send(gzipSync(new URLSearchParams(form()).toString()));
    expect(res.status).toBe(415);
    expect(res.body).toEqual(errorBody('invalid_request', 'the request body encoding is not supported'));
  });

  it.each(['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code', 'PASSWORD'])(
    'grant_type=%s is unsupported_grant_type',
    async (grantType) => {
      const res = await token().set('Authorization', client.basic).send({ ...form(), grant_type: grantType });
      expect(res.status).toBe(400);
      expect(res.body).toEqual(errorBody('unsupported_grant_type', 'this grant_type is not supported'));
    },
  );

  it('an unknown path is a JSON 404', async () => {
    const res = await request(service.app).get('/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual(errorBody('invalid_request', 'there is no such endpoint'));
  });
});

describe('password grant: client authentication (RFC 6749 §2.3)', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service, { scopes: ['profile'] });
  });
  const form = () => ({ grant_type: 'password', username: user.username, password: user.password });

  const expectInvalidClient = (res: request.Response) => {
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.error).toBe('invalid_client');
  };

  it('client_secret_post works', async () => {
    const client = await createTestClient(service);
    const res = await token().send({ ...form(), client_id: client.id, client_secret: client.secret });
    expect(res.status).toBe(200);
  });

  it('a public client allowed the password grant sends client_id alone', async () => {
    const client = await createTestClient(service, { type: 'public' });
    const res = await token().send({ ...form(), client_id: client.id });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).client_id).toBe(client.id);
  });

  it('a public client that sends a secret is invalid_client', async () => {
    const client = await createTestClient(service, { type: 'public' });
    expectInvalidClient(await token().send({ ...form(), client_id: client.id, client_secret: 'anything-at-all' }));
  });

  it('a confidential client without its secret is invalid_client', async () => {
    const client = await createTestClient(service);
    const res = await token().send({ ...form(), client_id: client.id });
    expectInvalidClient(res);
    expect(res.body).toEqual(errorBody('invalid_client', 'client authentication failed'));
  });

  it('no client at all is invalid_client', async () => {
    const res = await token().send(form());
    expectInvalidClient(res);
    expect(res.body).toEqual(errorBody('invalid_client', 'client authentication is required'));
  });

  it('a wrong secret and an unknown client answer the same', async () => {
    const client = await createTestClient(service);
    const wrong = await token().auth(client.id, 'not-the-secret').send(form());
    const unknown = await token().auth('no-such-client', 'not-the-secret').send(form());
    expectInvalidClient(wrong);
    expectInvalidClient(unknown);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body).toEqual(errorBody('invalid_client', 'client authentication failed'));
  });

  it.each([
    ['not base64', 'Basic !!!'],
    ['no colon', `Basic ${Buffer.from('justanid').toString('base64')}`],
    ['empty id', `Basic ${Buffer.from(':secret').toString('base64')}`],
    ['bad percent-encoding', `Basic ${Buffer.from('%zz:%zz').toString('base64')}`],
    ['another scheme', 'Bearer abc.def.ghi'],
    ['scheme alone', 'Basic'],
  ])('a malformed Authorization header (%s) is invalid_client', async (_name, header) => {
    const res = await token().set('Authorization', header).send(form());
    expectInvalidClient(res);
  });

  it('Basic and client_secret in the body at once is invalid_request', async () => {
    const client = await createTestClient(service);
    const res = await token().set('Authorization', client.basic).send({ ...form(), client_secret: client.secret });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', 'use only one client authentication method'));
  });

  it('a body client_id that differs from the Basic one is invalid_request', async () => {
    const client = await createTestClient(service);
    const res = await token().set('Authorization', client.basic).send({ ...form(), client_id: 'someone-else' });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_request', 'client_id does not match the Authorization header'));
  });

  it('Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1)', async () => {
    const client = await createTestClient(service);
    const res = await token().set('Authorization', `Basic ${Buffer.from(`${client.id}:${encodeURIComponent(client.secret!)}`).toString('base64')}`).send(form());
    expect(res.status).toBe(200);
  });

  it('a client not allowed the password grant is unauthorized_client', async () => {
    const client = await createTestClient(service, { grantTypes: ['client_credentials'] });
    const res = await token().set('Authorization', client.basic).send(form());
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('unauthorized_client', 'this client may not use this grant_type'));
  });
});

describe('password grant: users and passwords', () => {
  let client: Awaited<ReturnType<typeof createTestClient>>;
  beforeAll(async () => {
    client = await createTestClient(service);
  });
  const login = (username: string, password: string, extra: Record<string, string> = {}) =>
    token().set('Authorization', client.basic).send({ grant_type: 'password', username, password, ...extra });

  it('unknown user, wrong password and disabled user are indistinguishable', async () => {
    const known = await createTestUser(service);
    const disabled = await createTestUser(service);
    await service.deps.db.updateTable('users').set({ disabled: true }).where('id', '=', disabled.id).execute();

    const responses = [
      await login('nobody-by-this-name', 'whatever-password'),
      await login(known.username, 'wrong-password'),
      await login(disabled.username, disabled.password),
    ];
    const volatile = new Set(['date', 'x-request-id', 'etag']);
    // Rate-limit headers carry counters and a per-key hash that move with every request; their shape must not.
    const counters = (value: unknown) => String(value).replace(/pk=:[^:]*:/g, 'pk=:_:').replace(/\d+/g, 'N');
    const shape = (res: request.Response) => ({
      status: res.status,
      body: res.body,
      headers: Object.fromEntries(
        Object.entries(res.headers)
          .filter(([name]) => !volatile.has(name))
          .map(([name, value]) => [name, name.startsWith('ratelimit') ? counters(value) : value]),
      ),
    });
    expect(shape(responses[0]!)).toEqual(shape(responses[1]!));
    expect(shape(responses[1]!)).toEqual(shape(responses[2]!));
    expect(responses[0]!.status).toBe(400);
    expect(responses[0]!.body).toEqual(errorBody('invalid_grant', 'the username or password is incorrect'));
  });

  it('an unknown user costs one Argon2id verify at the configured parameters, like a known one', async () => {
    const verified: string[] = [];
    const real = service.deps.passwords;
    const counting = { ...real, verify: (hash: string, password: string) => (verified.push(hash), real.verify(hash, password)) };
    const app = recordResponses((await import('../src/http/app.js')).createApp({ ...service.deps, passwords: counting }));
    const known = await createTestUser(service);
    const send = (username: string) =>
      request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'password', username, password: 'wrong-password' });

    await send('no-such-user-anywhere');
    await send(known.username);
    await send('not a valid username'); // cannot exist (spaces), still verified
    expect(verified).toHaveLength(3);
    const params = (hash: string) => hash.split('$').slice(1, 4).join('$');
    const configured = `argon2id$v=19$m=${service.config.argon2.memoryKib},t=${service.config.argon2.iterations},p=${service.config.argon2.parallelism}`;
    expect(verified.map(params)).toEqual([configured, configured, configured]);
    expect(verified[0]).not.toBe(known.password_hash);
    expect(verified[1]).toBe(known.password_hash);
  });

  it.each(['ALICE', 'Alice', 'ａｌｉｃｅ', 'ＡＬＩＣＥ'])('username %s reaches the account alice', async (variant) => {
    const existing = await service.deps.db.selectFrom('users').select('id').where('username', '=', 'alice').executeTakeFirst();
    const alice = existing ?? (await createTestUser(service, { username: 'alice', password: 'alice password 1' }));
    const res = await login(variant, 'alice password 1');
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).sub).toBe(alice.id);
  });

  it('NFC and NFD forms of a password are the same password', async () => {
    const nfc = 'café crème brûlée'.normalize('NFC');
    const user = await createTestUser(service, { password: nfc });
    expect((await login(user.username, nfc.normalize('NFD'))).status).toBe(200);
    expect((await login(user.username, nfc)).status).toBe(200);
  });

  it('surrounding spaces are part of the password, and 128 characters work', async () => {
    const spaced = await createTestUser(service, { password: '  padded secret  ' });
    expect((await login(spaced.username, '  padded secret  ')).status).toBe(200);
    expect((await login(spaced.username, 'padded secret')).status).toBe(400);
    const long = await createTestUser(service, { password: 'L'.repeat(120) + '12345678' });
    expect((await login(long.username, 'L'.repeat(120) + '12345678')).status).toBe(200);
  });

  it('a hash made with older parameters is upgraded at login, without ending anything', async () => {
    const { createPasswordHasher } = await import('../src/auth/passwords.js');
    const user = await createTestUser(service);
    const stronger = { memoryKib: 512, iterations: 2, parallelism: 1 };
    const app = recordResponses((await import('../src/http/app.js')).createApp({ ...service.deps, passwords: createPasswordHasher(stronger) }));
    const res = await request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'password', username: user.username, password: user.password });
    expect(res.status).toBe(200);
    const row = await service.deps.db.selectFrom('users').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=512,t=2,p=1\$/);
    expect(row.password_changed_at.getTime()).toBe(user.password_changed_at.getTime());
    expect(service.logs.entries('password_rehashed').some((entry) => entry['user_id'] === user.id)).toBe(true);
  });

  it('logs an audit event for success and failure, with the user id and never the password', async () => {
    const user = await createTestUser(service);
    await login(user.username, user.password);
    await login(user.username, 'a-wrong-password-here');
    expect(service.logs.entries('login_succeeded').find((e) => e['user_id'] === user.id)).toMatchObject({ client_id: client.id, ip: expect.any(String) });
    expect(service.logs.entries('login_failed').find((e) => e['user_id'] === user.id)).toMatchObject({ reason: 'wrong_password', client_id: client.id });
    const all = service.logs.lines.join('\n');
    expect(all).not.toContain(user.password);
    expect(all).not.toContain('a-wrong-password-here');
    expect(all).not.toContain(client.secret!);
  });
});

describe('password grant: scopes (DESIGN.md, Scopes)', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service, { scopes: ['profile'], roles: { [`buyer-${Date.now()}`]: ['orders:read'] } });
  });
  const login = (client: { basic: string }, scope?: string) =>
    token()
      .set('Authorization', client.basic)
      .send({ grant_type: 'password', username: user.username, password: user.password, ...(scope === undefined ? {} : { scope }) });

  it('role scopes and direct scopes are both grantable', async () => {
    const client = await createTestClient(service);
    const res = await login(client, 'profile orders:read');
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('orders:read profile');
    expect(decodeJwt(res.body.access_token).scope).toBe('orders:read profile');
  });

  it('without a scope parameter the client default is granted, narrowed to what the user may have', async () => {
    const client = await createTestClient(service, { scopes: ['profile', 'orders:read', 'orders:write'], defaultScopes: ['profile', 'orders:write'] });
    const res = await login(client);
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('profile');
  });

  it.each([
    ['a scope the user may not have', 'orders:write'],
    ['a scope the client may not grant', 'admin'],
    ['a scope in another case', 'Profile'],
  ])('%s is invalid_scope', async (_name, scope) => {
    const client = await createTestClient(service, { scopes: ['profile', 'orders:read', 'orders:write'] });
    const res = await login(client, scope);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_scope', 'the requested scope is not allowed for this user or client'));
  });

  it.each(['profile  orders:read', ' profile', 'profile ', 'pro"file', 'pro\\file', 'prófile'])('malformed scope %j is invalid_scope', async (scope) => {
    const client = await createTestClient(service);
    const res = await login(client, scope);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(errorBody('invalid_scope', 'the scope parameter is malformed'));
  });
});
