import { randomBytes, randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { epochSeconds } from '../src/clock.js';
import type { TestDatabase } from './helpers/database.js';
import {
  createTestClient,
  createTestUser,
  TEST_ISSUER,
  type TestClient,
  passwordGrant,
  type TestService,
  useTestService,
} from './helpers/service.js';

const running = useTestService();
const service = (): TestService => running.current();
const database = (): TestDatabase => running.database();

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 86_400 * SECOND;
const INACTIVE = '{"active":false}';

type TestUser = Awaited<ReturnType<typeof createTestUser>>;

interface Tokens {
  readonly access_token: string;
  readonly refresh_token?: string;
  readonly scope: string;
}

async function login(client: TestClient, user: TestUser, scope?: string): Promise<Tokens> {
  const res = await passwordGrant(service().app, client, user, scope ? { scope } : {});
  expect(res.status).toBe(200);
  return res.body as Tokens;
}

async function refresh(client: TestClient, refreshToken: string): Promise<Tokens> {
  const res = await request(service().app)
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'refresh_token', refresh_token: refreshToken });
  expect(res.status).toBe(200);
  return res.body as Tokens;
}

/** POST /introspect as `caller` (client_secret_basic), checking what every answer must carry. */
async function introspect(caller: TestClient, token: string): Promise<request.Response> {
  const res = await request(service().app).post('/introspect').type('form').set('Authorization', caller.basic).send({ token });
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
  return res;
}

/** RFC 7662 §2.2: an inactive token gets `{"active": false}` and nothing else. */
async function expectInactive(caller: TestClient, token: string): Promise<void> {
  const res = await introspect(caller, token);
  expect(res.text).toBe(INACTIVE);
}

/** What introspection must say about an access token that is active for `caller`. */
function activeAccessToken(token: string, username: string | undefined): Record<string, unknown> {
  const claims = decodeJwt(token);
  const answer: Record<string, unknown> = {
    active: true,
    token_type: 'Bearer',
    token_use: 'access_token',
    scope: claims.scope,
    client_id: claims['client_id'],
    sub: claims.sub,
    aud: claims.aud,
    iss: claims.iss,
    jti: claims.jti,
    iat: claims.iat,
    exp: claims.exp,
  };
  if (username !== undefined) answer['username'] = username;
  if (claims['auth_time'] !== undefined) answer['auth_time'] = claims['auth_time'];
  if (claims['sid'] !== undefined) answer['sid'] = claims['sid'];
  return answer;
}

const userScopes = ['profile', 'orders:read'];
const setup = async (clientOptions: Parameters<typeof createTestClient>[1] = {}) => {
  const client = await createTestClient(service(), clientOptions);
  const user = await createTestUser(service(), { scopes: userScopes });
  const tokens = await login(client, user, 'profile orders:read');
  return { client, user, tokens };
};

describe('client authentication and the request', () => {
  it('needs client authentication: none is 401 invalid_client with a Basic challenge', async () => {
    const { tokens } = await setup();
    const res = await request(service().app).post('/introspect').type('form').send({ token: tokens.access_token });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication is required' });
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
  });

  it('refuses a wrong secret with 401 invalid_client', async () => {
    const { client, tokens } = await setup();
    const wrong = `Basic ${Buffer.from(`${client.id}:${randomBytes(16).toString('hex')}`).toString('base64')}`;
    const res = await request(service().app).post('/introspect').type('form').set('Authorization', wrong).send({ token: tokens.access_token });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
  });

  it("refuses a public client's client_id alone, even for a token issued to it (RFC 7662 §2.1)", async () => {
    const pub = await createTestClient(service(), { type: 'public' });
    const user = await createTestUser(service(), { scopes: userScopes });
    const issued = await request(service().app)
      .post('/token')
      .type('form')
      .send({ grant_type: 'password', client_id: pub.id, username: user.username, password: user.password });
    expect(issued.status).toBe(200);

    const res = await request(service().app).post('/introspect').type('form').send({ token: issued.body.access_token, client_id: pub.id });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'introspection needs a confidential client' });
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('accepts client_secret_post as well', async () => {
    const { client, user, tokens } = await setup();
    const res = await request(service().app)
      .post('/introspect')
      .type('form')
      .send({ token: tokens.access_token, client_id: client.id, client_secret: client.secret });
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual(activeAccessToken(tokens.access_token, user.username));
  });

  it('a missing or empty token is 400 invalid_request', async () => {
    const client = await createTestClient(service());
    for (const body of [{}, { token: '' }]) {
      const res = await request(service().app).post('/introspect').type('form').set('Authorization', client.basic).send(body);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: 'token is required' });
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('GET is 405 with Allow: POST', async () => {
    const client = await createTestClient(service());
    const res = await request(service().app).get('/introspect').set('Authorization', client.basic);
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('POST');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this endpoint accepts POST only' });
  });

  it('discovery lists the introspection endpoint and its client authentication methods', async () => {
    const res = await request(service().app).get('/.well-known/oauth-authorization-server');
    expect(res.status).toBe(200);
    expect(res.body.introspection_endpoint).toBe(`${TEST_ISSUER}/introspect`);
    expect(res.body.introspection_endpoint_auth_methods_supported).toEqual(['client_secret_basic', 'client_secret_post']);
  });
});

describe('access tokens', () => {
  it("the caller's own valid token is active, with every standard member", async () => {
    const { client, user, tokens } = await setup();
    const res = await introspect(client, tokens.access_token);
    const claims = decodeJwt(tokens.access_token);
    expect(res.body).toStrictEqual({
      active: true,
      token_type: 'Bearer',
      token_use: 'access_token',
      scope: 'orders:read profile',
      client_id: client.id,
      username: user.username,
      sub: user.id,
      aud: TEST_ISSUER,
      iss: TEST_ISSUER,
      jti: claims.jti,
      iat: epochSeconds(service().clock),
      exp: epochSeconds(service().clock) + 900,
      auth_time: epochSeconds(service().clock),
      sid: claims['sid'],
    });
    expect(res.body.sid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('the same token asked by another client is exactly {"active":false}', async () => {
    const { tokens } = await setup();
    const other = await createTestClient(service());
    await expectInactive(other, tokens.access_token);
  });

  it('is active for a resource server the token names in aud by its client id, and for no one else', async () => {
    // Two gateways configured with the same audience must not read each other's tokens.
    const otherGateway = await createTestClient(service(), { audience: ['orders-api'] });
    const { tokens } = await setup({ audience: ['orders-api'] });
    expect(decodeJwt(tokens.access_token).aud).toEqual(['orders-api', TEST_ISSUER]);
    await expectInactive(otherGateway, tokens.access_token);

    // A resource server named in aud by its client id.
    const billing = await createTestClient(service(), { grantTypes: ['client_credentials'] });
    const second = await setup({ audience: [billing.id] });
    expect((await introspect(billing, second.tokens.access_token)).body).toStrictEqual(
      activeAccessToken(second.tokens.access_token, second.user.username),
    );

    // A client with another audience learns nothing.
    const shipping = await createTestClient(service(), { grantTypes: ['client_credentials'], audience: ['shipping-api'] });
    await expectInactive(shipping, second.tokens.access_token);
  });

  it("a client whose configured audience is Tessera's own AUDIENCE learns nothing about other clients' tokens", async () => {
    const { tokens } = await setup();
    const selfNamed = await createTestClient(service(), { audience: ['orders-api', TEST_ISSUER] });
    await expectInactive(selfNamed, tokens.access_token);
  });

  it('an expired token is inactive', async () => {
    const { client, user, tokens } = await setup();
    service().clock.advance(14 * MINUTE);
    expect((await introspect(client, tokens.access_token)).body).toStrictEqual(activeAccessToken(tokens.access_token, user.username));
    service().clock.advance(2 * MINUTE); // 16 minutes: past exp and the 5 s clock tolerance
    await expectInactive(client, tokens.access_token);
  });

  it("a disabled user's token is inactive, and active again once the user is re-enabled", async () => {
    // Without the refresh grant the token still names a session (its sid); here the database is
    // changed behind the API's back, so only the user check can make it inactive.
    const { client, user, tokens } = await setup({ grantTypes: ['password'] });
    expect(decodeJwt(tokens.access_token).sid).toMatch(/^[0-9a-f-]{36}$/);
    await database().db.updateTable('users').set({ disabled: true }).where('id', '=', user.id).execute();
    await expectInactive(client, tokens.access_token);
    await database().db.updateTable('users').set({ disabled: false }).where('id', '=', user.id).execute();
    expect((await introspect(client, tokens.access_token)).body).toStrictEqual(activeAccessToken(tokens.access_token, user.username));
  });

  it("a deleted user's token is inactive", async () => {
    const { client, user, tokens } = await setup({ grantTypes: ['password'] });
    await database().db.deleteFrom('users').where('id', '=', user.id).execute();
    await expectInactive(client, tokens.access_token);
  });

  it('the access token of a session ended by POST /revoke is inactive, and so is its refresh token', async () => {
    const { client, user, tokens } = await setup();
    expect((await introspect(client, tokens.access_token)).body).toStrictEqual(activeAccessToken(tokens.access_token, user.username));
    const revoked = await request(service().app).post('/revoke').type('form').set('Authorization', client.basic).send({ token: tokens.refresh_token });
    expect(revoked.status).toBe(200);
    await expectInactive(client, tokens.access_token);
    await expectInactive(client, tokens.refresh_token!);
  });

  it('malformed tokens are inactive, never an error', async () => {
    const { client, tokens } = await setup();
    const [header, payload, signature] = tokens.access_token.split('.');
    const malformed = [
      'garbage',
      'a.b.c',
      '...',
      `${header}.${payload}`,
      `${header}.${payload}.`,
      `${tokens.access_token}.${payload}`,
      `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(tokens.access_token), scope: 'admin' })).toString('base64url')}.${signature}`,
      "' OR 1=1--",
      'x'.repeat(9_000),
      '\u00e9\u0000',
    ];
    for (const token of malformed) await expectInactive(client, token);
  });

  // Forged tokens (ATTACKS.md A) are introspected in test/security/a-forged-tokens.test.ts.

  it('unknown tokens are inactive', async () => {
    const client = await createTestClient(service());
    for (const token of ['A'.repeat(43), randomBytes(32).toString('base64url'), randomUUID()]) await expectInactive(client, token);
  });

  it('a client_credentials token is active with sub = the client id and no username, sid or auth_time', async () => {
    const machine = await createTestClient(service(), { grantTypes: ['client_credentials'], scopes: ['orders:read'] });
    const issued = await request(service().app).post('/token').type('form').set('Authorization', machine.basic).send({ grant_type: 'client_credentials' });
    expect(issued.status).toBe(200);
    const token = issued.body.access_token as string;
    const res = await introspect(machine, token);
    const claims = decodeJwt(token);
    expect(res.body).toStrictEqual({
      active: true,
      token_type: 'Bearer',
      token_use: 'access_token',
      scope: 'orders:read',
      client_id: machine.id,
      sub: machine.id,
      aud: TEST_ISSUER,
      iss: TEST_ISSUER,
      jti: claims.jti,
      iat: claims.iat,
      exp: claims.exp,
    });
    // Another client learns nothing; once the client is deleted its token stands for nothing.
    await expectInactive(await createTestClient(service()), token);
    const observer = await createTestClient(service(), { grantTypes: ['client_credentials'] });
    const ownToken = (
      await request(service().app).post('/token').type('form').set('Authorization', observer.basic).send({ grant_type: 'client_credentials' })
    ).body.access_token as string;
    expect((await introspect(observer, ownToken)).body.active).toBe(true);
    await database().db.deleteFrom('clients').where('id', '=', machine.id).execute();
    const afterDelete = await request(service().app).post('/introspect').type('form').set('Authorization', observer.basic).send({ token });
    expect(afterDelete.text).toBe(INACTIVE);
  });
});

/** What /introspect says of a live refresh token of the family `tokens` started (RFC 7662 §2.2). */
function activeRefreshToken(client: TestClient, user: { id: string; username: string }, tokens: Tokens, times: { iat: number; exp: number }) {
  return {
    active: true,
    token_use: 'refresh_token',
    scope: 'orders:read profile',
    client_id: client.id,
    username: user.username,
    sub: user.id,
    iss: TEST_ISSUER,
    ...times,
    sid: decodeJwt(tokens.access_token).sid,
  };
}

describe('refresh tokens', () => {
  it('a current refresh token is active, exp the idle deadline while that comes first', async () => {
    const { client, user, tokens } = await setup();
    const now = epochSeconds(service().clock);
    const res = await introspect(client, tokens.refresh_token!);
    // exp: REFRESH_TOKEN_IDLE_TTL, before the 90-day absolute limit
    expect(res.body).toStrictEqual(activeRefreshToken(client, user, tokens, { iat: now, exp: now + 14 * 86_400 }));
  });

  it('exp is the absolute deadline once that comes before the idle one', async () => {
    const { client, user, tokens } = await setup();
    const loginAt = epochSeconds(service().clock);
    let current = tokens;
    for (let day = 0; day < 78; day += 13) {
      service().clock.advance(13 * DAY);
      current = await refresh(client, current.refresh_token!);
    }
    service().clock.advance(2 * DAY); // day 80: the idle deadline (day 94) is past the absolute one (day 90)
    current = await refresh(client, current.refresh_token!);
    const res = await introspect(client, current.refresh_token!);
    expect(res.body).toStrictEqual(activeRefreshToken(client, user, tokens, { iat: epochSeconds(service().clock), exp: loginAt + 90 * 86_400 }));
    // Past the absolute deadline the token is inactive.
    service().clock.advance(10 * DAY);
    await expectInactive(client, current.refresh_token!);
  });

  it('a refresh token idle past REFRESH_TOKEN_IDLE_TTL is inactive', async () => {
    const { client, tokens } = await setup();
    service().clock.advance(14 * DAY - SECOND);
    expect((await introspect(client, tokens.refresh_token!)).body.active).toBe(true);
    service().clock.advance(SECOND);
    await expectInactive(client, tokens.refresh_token!);
  });

  it('a consumed (rotated) refresh token is inactive even within the grace window, and asking revokes nothing', async () => {
    const { client, user, tokens } = await setup();
    const next = await refresh(client, tokens.refresh_token!);
    await expectInactive(client, tokens.refresh_token!);
    const res = await introspect(client, next.refresh_token!);
    expect(res.body).toMatchObject({ active: true, token_use: 'refresh_token', sub: user.id, sid: decodeJwt(tokens.access_token).sid });

    // Introspection is not a use: the family lives, and a retry inside the grace window still gets the same successor.
    const family = await database().db
      .selectFrom('refresh_families')
      .select(['revoked_at', 'generation'])
      .where('id', '=', decodeJwt(tokens.access_token).sid as string)
      .executeTakeFirstOrThrow();
    expect(family).toEqual({ revoked_at: null, generation: 2 });
    const replay = await refresh(client, tokens.refresh_token!);
    expect(replay.refresh_token).toBe(next.refresh_token);
  });

  it("another client's refresh token is inactive, and stays usable by its own client", async () => {
    const { client, tokens } = await setup();
    const other = await createTestClient(service());
    // Even a resource server its access tokens name learns nothing about the refresh token.
    const audienceClient = await createTestClient(service(), { audience: [TEST_ISSUER] });
    await expectInactive(other, tokens.refresh_token!);
    await expectInactive(audienceClient, tokens.refresh_token!);
    expect((await introspect(client, tokens.refresh_token!)).body.active).toBe(true);
    expect((await refresh(client, tokens.refresh_token!)).refresh_token).toEqual(expect.any(String));
  });

  it("a disabled user's refresh token is inactive", async () => {
    const { client, user, tokens } = await setup();
    await database().db.updateTable('users').set({ disabled: true }).where('id', '=', user.id).execute();
    await expectInactive(client, tokens.refresh_token!);
  });

  it('an access token presented as a refresh token and vice versa are judged by their own kind', async () => {
    const { client, tokens } = await setup();
    // Both are active for their client; neither is confused for the other.
    expect((await introspect(client, tokens.access_token)).body.token_type).toBe('Bearer');
    expect((await introspect(client, tokens.refresh_token!)).body.token_use).toBe('refresh_token');
  });
});
