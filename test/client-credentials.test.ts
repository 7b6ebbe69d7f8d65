import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { epochSeconds } from '../src/clock.js';
import { createTestClient, TEST_ISSUER, type TestClient, type TestService, useTestService } from './helpers/service.js';

const running = useTestService();
const service = (): TestService => running.current();

const UNAUTHORIZED_GRANT = { error: 'unauthorized_client', error_description: 'this client may not use this grant_type' };

/** A service client: confidential, allowed client_credentials only. */
const machineClient = (options: Parameters<typeof createTestClient>[1] = {}) =>
  createTestClient(service(), {
    grantTypes: ['client_credentials'],
    scopes: ['orders:read', 'orders:write', 'inventory:read'],
    defaultScopes: ['orders:read'],
    ...options,
  });

function clientToken(client: TestClient, extra: Record<string, string> = {}) {
  return request(service().app)
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'client_credentials', ...extra });
}

function expectNoStore(res: request.Response): void {
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
}

describe('grant_type=client_credentials (RFC 6749 §4.4)', () => {
  it('issues a confidential client an access token for itself: sub = client_id, no refresh token, no sid, no auth_time', async () => {
    const client = await machineClient();
    const res = await clientToken(client, { scope: 'orders:write inventory:read' });

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expectNoStore(res);
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'inventory:read orders:write' });

    const now = epochSeconds(service().clock);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims).toStrictEqual({
      iss: TEST_ISSUER,
      sub: client.id,
      aud: TEST_ISSUER,
      client_id: client.id,
      scope: 'inventory:read orders:write',
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      iat: now,
      exp: now + 900,
    });
    expect(decodeProtectedHeader(res.body.access_token as string)).toStrictEqual({
      alg: 'RS256',
      typ: 'at+jwt',
      kid: service().deps.keys.current().signing.kid,
    });
  });

  it("without a scope parameter, grants the client's default scopes", async () => {
    const client = await machineClient({ defaultScopes: ['orders:read', 'inventory:read'] });
    const res = await clientToken(client);
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('inventory:read orders:read');
    expect(decodeJwt(res.body.access_token as string).scope).toBe('inventory:read orders:read');
  });

  it('accepts client_secret_post too', async () => {
    const client = await machineClient();
    const res = await request(service().app)
      .post('/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret, scope: 'orders:read' });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ sub: client.id, client_id: client.id, scope: 'orders:read' });
  });

  it("names the client's audiences in aud, with Tessera's own", async () => {
    const client = await machineClient({ audience: ['orders-api'] });
    const res = await clientToken(client);
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string).aud).toEqual(['orders-api', TEST_ISSUER]);
  });

  // A scope outside the client's allowed set, and malformed scopes: test/security/h-scopes.test.ts (H1, H2).

  it('a confidential client without the grant is unauthorized_client', async () => {
    const client = await createTestClient(service(), { grantTypes: ['password', 'refresh_token'] });
    const res = await clientToken(client);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(UNAUTHORIZED_GRANT);
    expectNoStore(res);
  });

  it('a wrong secret is invalid_client', async () => {
    const client = await machineClient();
    const res = await request(service().app)
      .post('/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: client.id, client_secret: 'not-the-secret' });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
  });

  it('an empty secret authenticates no one, even a client whose stored secret is the hash of the empty string', async () => {
    // Only an edit of the table can make such a client (the CLI and the admin API generate secrets,
    // or take 32 characters at least); RFC 6749 §2.3.1 still gives an empty secret no meaning.
    const client = await createTestClient(service(), { grantTypes: ['client_credentials'], scopes: ['orders:read'], secret: '' });
    for (const auth of [
      (req: request.Test) => req.send({ grant_type: 'client_credentials', client_id: client.id, client_secret: '' }),
      (req: request.Test) => req.set('Authorization', client.basic).send({ grant_type: 'client_credentials' }),
    ]) {
      const res = await auth(request(service().app).post('/token').type('form'));
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    }
  });

  it('a public client, identified by client_id alone, is unauthorized_client and gets no token', async () => {
    // Without the grant: refused by the grant-type check.
    const ordinary = await createTestClient(service(), { type: 'public' });
    const without = await request(service().app).post('/token').type('form').send({ grant_type: 'client_credentials', client_id: ordinary.id });
    expect(without.status).toBe(400);
    expect(without.body).toEqual(UNAUTHORIZED_GRANT);

    // With the grant (the CLI refuses to create one, but the table allows it): refused by the grant itself.
    const misconfigured = await createTestClient(service(), { type: 'public', grantTypes: ['client_credentials'], scopes: ['orders:read'] });
    const withGrant = await request(service().app)
      .post('/token')
      .type('form')
      .send({ grant_type: 'client_credentials', client_id: misconfigured.id });
    expect(withGrant.status).toBe(400);
    expect(withGrant.body).toEqual({ error: 'unauthorized_client', error_description: 'only confidential clients may use client_credentials' });
    expectNoStore(withGrant);
  });
});

describe('what a client_credentials token is good for', () => {
  it('/userinfo refuses it with 401 invalid_token: it names no user', async () => {
    const client = await machineClient();
    const token = (await clientToken(client)).body.access_token as string;
    for (const path of ['/userinfo', '/users/me']) {
      const res = await request(service().app).get(path).set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });
      expect(res.headers['www-authenticate']).toBe('Bearer realm="tessera", error="invalid_token"');
      expectNoStore(res);
    }
  });

  it('verifies against the published JWKS as an RFC 9068 access token', async () => {
    const client = await machineClient({ audience: ['orders-api'] });
    const token = (await clientToken(client, { scope: 'orders:write' })).body.access_token as string;
    const jwks = (await request(service().app).get('/.well-known/jwks.json')).body as JSONWebKeySet;

    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: TEST_ISSUER,
      audience: 'orders-api',
      typ: 'at+jwt',
      algorithms: ['RS256'],
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      currentDate: new Date(service().clock.now()),
    });
    expect(protectedHeader.kid).toBe(service().deps.keys.current().signing.kid);
    expect(payload).toMatchObject({ sub: client.id, client_id: client.id, scope: 'orders:write' });
  });

  it('cannot be refreshed: there is no refresh token, and a refresh_token parameter changes nothing', async () => {
    const client = await machineClient({ grantTypes: ['client_credentials', 'refresh_token'] });
    const res = await clientToken(client, { refresh_token: 'A'.repeat(43) });
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).toBeUndefined();
    expect(decodeJwt(res.body.access_token as string).sid).toBeUndefined();
    expect(await service().deps.db.selectFrom('refresh_families').select('id').where('client_id', '=', client.id).execute()).toEqual([]);
  });
});

describe('client ids never pass for user ids', () => {
  it('a uuid-shaped client id is refused by the CLI and never looked up at /token', async () => {
    const { runCli } = await import('../src/cli/run.js');
    const { randomUUID } = await import('node:crypto');
    const userLike = randomUUID();
    let stderr = '';
    const code = await runCli(['clients', 'create', '--id', userLike, '--grant', 'client_credentials'], { ...service().config.databaseUrl ? { DATABASE_URL: service().config.databaseUrl } : {}, KEY_ENCRYPTION_KEYS: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }, {
      readStdin: async () => '',
      stdout: () => undefined,
      stderr: (text) => (stderr += text),
    });
    expect(code).toBe(2);
    expect(stderr).toContain('is not shaped like a uuid');
    const res = await request(service().app).post('/token').type('form').auth(userLike, 'x'.repeat(43)).send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });
});
