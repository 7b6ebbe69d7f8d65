import { decodeJwt, decodeProtectedHeader } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestClient, createTestUser, passwordGrant, recordResponses, TEST_ISSUER, type TestService, useTestService } from './helpers/service.js';

const running = useTestService();
const service = (): TestService => running.current();

const token = () => request(service().app).post('/token').type('form');

describe('password grant: success', () => {
  it('issues an RFC 9068 access token with the granted scope', async () => {
    const user = await createTestUser(service(), { scopes: ['profile', 'orders:read'] });
    const client = await createTestClient(service(), { grantTypes: ['password'] });
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
    expect(header).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: service().deps.keys.current().signing.kid });
    const claims = decodeJwt(res.body.access_token);
    const now = Math.floor(service().clock.now() / 1000);
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
      // A client without the refresh grant still starts a session, so that a logout ends this token at Tessera.
      sid: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
  });
});

const errorBody = (error: string, description?: string) =>
  description === undefined ? { error, error_description: expect.any(String) } : { error, error_description: description };

// Methods, content types, parameters in the URL, repeats, sizes and encodings: test/security/e-http.test.ts (E1-E6).
// Missing, blank, oversized, control-character and array-shaped credentials, and unsupported or
// unauthorised grant types: test/security/c-credentials.test.ts (C3, C6, C7, C9, C10).
describe('password grant: request format (RFC 6749 §3.2)', () => {
  it('an unknown path is a JSON 404', async () => {
    const res = await request(service().app).get('/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual(errorBody('invalid_request', 'there is no such endpoint'));
  });
});

describe('password grant: client authentication (RFC 6749 §2.3)', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service(), { scopes: ['profile'] });
  });
  const form = () => ({ grant_type: 'password', username: user.username, password: user.password });

  const expectInvalidClient = (res: request.Response) => {
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.error).toBe('invalid_client');
  };

  it('client_secret_post works', async () => {
    const client = await createTestClient(service());
    const res = await token().send({ ...form(), client_id: client.id, client_secret: client.secret });
    expect(res.status).toBe(200);
  });

  it('a public client allowed the password grant sends client_id alone', async () => {
    const client = await createTestClient(service(), { type: 'public' });
    const res = await token().send({ ...form(), client_id: client.id });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).client_id).toBe(client.id);
  });

  it('a public client that sends a secret is invalid_client', async () => {
    const client = await createTestClient(service(), { type: 'public' });
    expectInvalidClient(await token().send({ ...form(), client_id: client.id, client_secret: 'anything-at-all' }));
  });

  it('a confidential client without its secret is invalid_client', async () => {
    const client = await createTestClient(service());
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
    const client = await createTestClient(service());
    const wrong = await token().auth(client.id, 'not-the-secret').send(form());
    const unknown = await token().auth('no-such-client', 'not-the-secret').send(form());
    expectInvalidClient(wrong);
    expectInvalidClient(unknown);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body).toEqual(errorBody('invalid_client', 'client authentication failed'));
  });

  // Malformed Basic headers (E5) and two authentication methods at once (E4): test/security/e-http.test.ts.

  it('Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1)', async () => {
    const client = await createTestClient(service());
    const res = await token().set('Authorization', `Basic ${Buffer.from(`${client.id}:${encodeURIComponent(client.secret!)}`).toString('base64')}`).send(form());
    expect(res.status).toBe(200);
  });
});

describe('password grant: users and passwords', () => {
  let client: Awaited<ReturnType<typeof createTestClient>>;
  beforeAll(async () => {
    client = await createTestClient(service());
  });
  const login = (username: string, password: string, extra: Record<string, string> = {}) =>
    token().set('Authorization', client.basic).send({ grant_type: 'password', username, password, ...extra });

  // Unknown, wrong and disabled alike, the Argon2 cost of an unknown user, username and password
  // normalisation, spaces and length: test/security/c-credentials.test.ts (C1, C2, C5, C8).

  it('a hash made with older parameters is upgraded at login, without ending anything', async () => {
    const { createPasswordHasher } = await import('../src/auth/passwords.js');
    const user = await createTestUser(service());
    const stronger = { memoryKib: 512, iterations: 2, parallelism: 1 };
    const app = recordResponses((await import('../src/http/app.js')).createApp({ ...service().deps, passwords: createPasswordHasher(stronger) }));
    const res = await passwordGrant(app, client, user);
    expect(res.status).toBe(200);
    const row = await service().deps.db.selectFrom('users').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=512,t=2,p=1\$/);
    expect(row.password_changed_at.getTime()).toBe(user.password_changed_at.getTime());
    expect(service().logs.entries('password_rehashed').some((entry) => entry['user_id'] === user.id)).toBe(true);
  });

  it('logs an audit event for success and failure, with the user id and never the password', async () => {
    const user = await createTestUser(service());
    await login(user.username, user.password);
    await login(user.username, 'a-wrong-password-here');
    expect(service().logs.entries('login_succeeded').find((e) => e['user_id'] === user.id)).toMatchObject({ client_id: client.id, ip: expect.any(String) });
    expect(service().logs.entries('login_failed').find((e) => e['user_id'] === user.id)).toMatchObject({ reason: 'wrong_password', client_id: client.id });
    const all = service().logs.lines.join('\n');
    expect(all).not.toContain(user.password);
    expect(all).not.toContain('a-wrong-password-here');
    expect(all).not.toContain(client.secret!);
  });
});

// Scopes (DESIGN.md, Scopes): test/security/h-scopes.test.ts (H1, H2).
