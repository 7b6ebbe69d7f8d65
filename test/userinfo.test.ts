import { type KeyObject, randomUUID } from 'node:crypto';
import { decodeJwt, type JWTPayload } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { epochSeconds } from '../src/clock.js';
import { signAccessToken } from '../src/tokens/access-token.js';
import { type ForgeOptions, forgeJwt } from './helpers/forge.js';
import type { TestDatabase } from './helpers/database.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  TEST_ISSUER,
  type TestClient,
  type TestService,
  uniqueName,
  useTestService,
} from './helpers/service.js';

const running = useTestService();
const service = (): TestService => running.current();
const database = (): TestDatabase => running.database();
let client: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;
/** A live session of `user`: every user token Tessera accepts names one (`sid`). */
let sid: string;

beforeAll(async () => {
  client = await createTestClient(service(), { scopes: ['profile', 'orders:read'], defaultScopes: ['profile'] });
  user = await createTestUser(service(), { scopes: ['profile'] });
  sid = decodeJwt(await passwordToken(user)).sid as string;
});

const NOT_VALID = 'the access token is not valid';

/** An access token from the password grant, as a gateway would get it. */
async function passwordToken(
  forUser: { username: string; password: string },
  forClient: TestClient = client,
  scope?: string,
): Promise<string> {
  const res = await request(service().app)
    .post('/token')
    .type('form')
    .set('Authorization', forClient.basic)
    .send({ grant_type: 'password', username: forUser.username, password: forUser.password, ...(scope ? { scope } : {}) });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

const userinfo = (path = '/userinfo') => request(service().app).get(path);
const withToken = (token: string, path = '/userinfo') => userinfo(path).set('Authorization', `Bearer ${token}`);

/**
 * RFC 6750 §3.1: 401 and invalid_token in the body, never cached. The challenge carries
 * error="invalid_token" whenever a token was presented; a request without one gets a bare challenge.
 */
function expectInvalidToken(
  res: request.Response,
  description = NOT_VALID,
  challenge = `Bearer realm="tessera", error="invalid_token", error_description="${description}"`,
): void {
  expect(res.status).toBe(401);
  expect(res.body).toEqual({ error: 'invalid_token', error_description: description });
  expect(res.headers['www-authenticate']).toBe(challenge);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
}

// --- forging -------------------------------------------------------------------------------


function genuineKey(): { kid: string; privateKey: KeyObject } {
  return service().deps.keys.current().signing;
}

/** The claims Tessera itself would put in a token for `user` via `client`, now. */
function validClaims(overrides: Record<string, unknown> = {}): JWTPayload {
  const now = epochSeconds(service().clock);
  return {
    iss: TEST_ISSUER,
    sub: user.id,
    aud: TEST_ISSUER,
    client_id: client.id,
    scope: 'profile',
    jti: randomUUID(),
    iat: now,
    exp: now + 900,
    sid,
    ...overrides,
  };
}

/** Signs with jose; by default exactly like Tessera (genuine key, RS256, at+jwt, its kid). */
const forge = (options: ForgeOptions = {}): Promise<string> => forgeJwt(genuineKey(), validClaims(options.claims), options);

// --- the happy path ------------------------------------------------------------------------

describe('GET /userinfo and GET /users/me', () => {
  it('returns the profile of the bearer: roles, and role scopes plus direct scopes', async () => {
    const support = uniqueName('support');
    const billing = uniqueName('billing');
    const member = await createTestUser(service(), {
      scopes: ['profile', 'orders:read'],
      roles: { [support]: ['tickets:read', 'profile'], [billing]: ['invoices:read'] },
    });
    const token = await passwordToken(member);

    for (const path of ['/userinfo', '/users/me']) {
      const res = await withToken(token, path);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['pragma']).toBe('no-cache');
      expect(res.body).toEqual({
        sub: member.id,
        username: member.username,
        preferred_username: member.username,
        roles: [billing, support].sort(),
        scopes: ['invoices:read', 'orders:read', 'profile', 'tickets:read'],
        updated_at: Math.floor(member.updated_at.getTime() / 1000),
      });
      expect(res.text).not.toContain('$argon2');
      expect(res.text).not.toContain(member.password_hash);
      expect(res.text).not.toContain(member.password);
    }
  });

  it('returns empty lists for a user without roles or scopes', async () => {
    const bare = await createTestUser(service());
    const res = await withToken(await passwordToken(bare));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ sub: bare.id, username: bare.username, roles: [], scopes: [] });
  });

  it('accepts the Bearer scheme in any case', async () => {
    const token = await passwordToken(user);
    const res = await userinfo().set('Authorization', `bearer ${token}`);
    expect(res.status).toBe(200);
    expect(res.body.sub).toBe(user.id);
  });

  it('accepts a token forged exactly like a genuine one (so the refusals below test one thing each)', async () => {
    const res = await withToken(await forge());
    expect(res.status).toBe(200);
    expect(res.body.sub).toBe(user.id);
  });

  it('accepts a token whose audiences include AUDIENCE', async () => {
    const multi = await createTestClient(service(), { audience: ['orders-api', TEST_ISSUER] });
    const token = await passwordToken(user, multi);
    expect(decodeJwt(token).aud).toEqual(['orders-api', TEST_ISSUER]);
    const res = await withToken(token);
    expect(res.status).toBe(200);
    expect(res.body.sub).toBe(user.id);
  });
});

// --- credentials missing or not a bearer token ---------------------------------------------

describe('requests without a bearer token', () => {
  it('answers no Authorization with a bare challenge (RFC 6750 §3.1)', async () => {
    for (const path of ['/userinfo', '/users/me']) {
      const res = await userinfo(path);
      expectInvalidToken(res, 'a bearer access token is required', 'Bearer realm="tessera"');
    }
  });

  it('never reads the token from the query string (RFC 6750 §2.3 is not offered)', async () => {
    const token = await passwordToken(user);
    const res = await request(service().app).get(`/userinfo?access_token=${token}`);
    expectInvalidToken(res, 'a bearer access token is required', 'Bearer realm="tessera"');
  });

  it.each([
    ['a Basic header', () => `Basic ${Buffer.from(`${client.id}:${client.secret ?? ''}`).toString('base64')}`],
    ['another scheme with a genuine token', async () => `Token ${await passwordToken(user)}`],
    ['the token without a scheme', async () => passwordToken(user)],
    ['Bearer without a token', () => 'Bearer'],
    ['Bearer with two spaces', async () => `Bearer  ${await passwordToken(user)}`],
    ['Bearer with two tokens', async () => `Bearer ${await passwordToken(user)} ${await passwordToken(user)}`],
    ['Bearer with a character outside b64token', () => 'Bearer abc"def'],
  ])('refuses %s', async (_label, header) => {
    const res = await userinfo().set('Authorization', await header());
    expectInvalidToken(res, 'the Authorization header is not a bearer token', 'Bearer realm="tessera", error="invalid_token"');
  });
});

// --- claims of the wrong type ---------------------------------------------------------------
// Forged and confused tokens (ATTACKS.md A) are thrown at /userinfo in test/security/a-forged-tokens.test.ts.

describe('claims of the wrong type', () => {
  it('refuses a token whose scope or client_id is not a string', async () => {
    expectInvalidToken(await withToken(await forge({ claims: { scope: ['profile'] } })), 'the access token is malformed');
    expectInvalidToken(await withToken(await forge({ claims: { client_id: 42 } })), 'the access token is malformed');
  });
});

// --- lifetime, users and audiences ---------------------------------------------------------

describe('token lifetime', () => {
  it('accepts a token up to the clock tolerance after exp, then refuses it as expired', async () => {
    const token = await passwordToken(user);
    const { exp, iat } = decodeJwt(token);
    expect(exp! - iat!).toBe(900);

    service().clock.advance(904_000); // 15 min + 4 s: inside the 5 s tolerance
    expect((await withToken(token)).status).toBe(200);

    service().clock.advance(1_000); // 15 min + 5 s
    expectInvalidToken(await withToken(token), 'the access token has expired');
    expectInvalidToken(await withToken(token, '/users/me'), 'the access token has expired');

    service().clock.advance(3_600_000);
    expectInvalidToken(await withToken(token), 'the access token has expired');
  });
});

describe('the user behind the token', () => {
  it('refuses the token of a disabled user at once, and accepts it again once re-enabled', async () => {
    const victim = await createTestUser(service(), { scopes: ['profile'] });
    const token = await passwordToken(victim);
    expect((await withToken(token)).status).toBe(200);

    await database().db.updateTable('users').set({ disabled: true }).where('id', '=', victim.id).execute();
    for (const path of ['/userinfo', '/users/me']) {
      expectInvalidToken(await withToken(token, path), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
    }

    await database().db.updateTable('users').set({ disabled: false }).where('id', '=', victim.id).execute();
    expect((await withToken(token)).status).toBe(200);
  });

  it('refuses the token of a deleted user', async () => {
    const gone = await createTestUser(service());
    const token = await passwordToken(gone);
    await database().db.deleteFrom('users').where('id', '=', gone.id).execute();
    expectInvalidToken(await withToken(token), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
  });

  it('refuses a validly signed token for a user id that never existed', async () => {
    const token = await forge({ claims: { sub: randomUUID() } });
    expectInvalidToken(await withToken(token), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
  });

  it('refuses a token Tessera signed for a client (sub is a client id, as in client_credentials), not with a 500', async () => {
    const subject = { sub: client.id, clientId: client.id, scope: ['profile'], audience: [] };
    const { token } = await signAccessToken(service().deps, subject);
    expect(decodeJwt(token).sub).toBe(client.id);
    expectInvalidToken(await withToken(token), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
  });
});

describe('audience', () => {
  it("a client's own audience comes with Tessera's, so its users can still reach /userinfo", async () => {
    const ordersClient = await createTestClient(service(), { audience: ['orders-api'] });
    const token = await passwordToken(user, ordersClient);
    expect(decodeJwt(token).aud).toEqual(['orders-api', TEST_ISSUER]);
    expect((await withToken(token)).status).toBe(200);
  });
});

describe('methods', () => {
  it.each([
    ['post', '/userinfo'],
    ['put', '/userinfo'],
    ['delete', '/userinfo'],
    ['post', '/users/me'],
    ['patch', '/users/me'],
  ] as const)('%s %s is 405 with Allow: GET, HEAD', async (method, path) => {
    const token = await passwordToken(user);
    const res = await request(service().app)[method](path).set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('GET, HEAD');
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this endpoint accepts GET, HEAD only' });
  });
});

// --- the scheme, and the session behind the token --------------------------------------------

describe('the Bearer scheme and the session, at every user endpoint', () => {
  it.each([
    ['a genuine token behind another word ending in Bearer', (token: string) => `XBearer ${token}`],
    ['a genuine token after another credential', (token: string) => `Basic eDp5 Bearer ${token}`],
  ])('refuses %s', async (_label, header) => {
    const token = await passwordToken(user);
    expect((await withToken(token)).status).toBe(200);
    const res = await userinfo().set('Authorization', header(token));
    expectInvalidToken(res, 'the Authorization header is not a bearer token', 'Bearer realm="tessera", error="invalid_token"');
  });

  it('ends the access tokens of a session at once when its refresh token is revoked, at /userinfo and /users/me/password', async () => {
    const who = await createTestUser(service(), { scopes: ['profile'] });
    const login = await passwordGrant(service().app, client, who);
    expect(login.status).toBe(200);
    const { access_token: token, refresh_token: refreshToken } = login.body as { access_token: string; refresh_token: string };
    const changePassword = () => request(service().app).post('/users/me/password').set('Authorization', `Bearer ${token}`).type('json').send({});
    // Live: the token gets past authentication, to the missing parameters.
    expect((await withToken(token)).status).toBe(200);
    const live = await changePassword();
    expect({ status: live.status, body: live.body }).toEqual({
      status: 400,
      body: { error: 'invalid_request', error_description: 'current_password and new_password are required' },
    });

    const revoked = await request(service().app).post('/revoke').type('form').set('Authorization', client.basic).send({ token: refreshToken });
    expect(revoked.status).toBe(200);
    expectInvalidToken(await withToken(token), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
    expectInvalidToken(await changePassword(), NOT_VALID, 'Bearer realm="tessera", error="invalid_token"');
  });
});

describe('token size', () => {
  /** A token Tessera's key signed, padded (a claim, then a header member) to exactly `length` characters. */
  async function signedOfLength(length: number): Promise<string> {
    for (let extra = 0; extra < 4; extra++) {
      const header = { x: 'h'.repeat(extra) };
      const bare = await forge({ header, claims: { padding: '' } });
      const fill = Math.floor(((length - bare.length) * 3) / 4) - 2;
      for (let pad = Math.max(0, fill); pad < fill + 6; pad++) {
        const token = await forge({ header, claims: { padding: 'p'.repeat(pad) } });
        if (token.length === length) return token;
      }
    }
    throw new Error(`no token of ${length} characters`);
  }

  it('accepts a genuine token of 8192 characters, and refuses one of 8193 as too long before reading it', async () => {
    const longest = await signedOfLength(8192);
    expect((await withToken(longest)).status).toBe(200);
    expectInvalidToken(await withToken(await signedOfLength(8193)), 'the access token is too long');
  });
});

describe('what verification checks, one claim or header at a time', () => {
  // The attacks themselves, at every endpoint that takes a token, are ATTACKS.md A in
  // test/security/a-forged-tokens.test.ts; here, each check of src/tokens/access-token.ts once.
  type Forgery = (now: number) => ForgeOptions;
  it.each<[string, Forgery, number]>([
    ['a token forged exactly like a genuine one (the control)', () => ({}), 200],
    ...['exp', 'iat', 'sub', 'jti', 'client_id'].map((claim): [string, Forgery, number] => [`no ${claim}`, () => ({ claims: { [claim]: undefined } }), 401]),
    ['another algorithm with the genuine key (RS384)', () => ({ header: { alg: 'RS384' } }), 401],
    ['typ JWT', () => ({ header: { typ: 'JWT' } }), 401],
    ['another issuer', () => ({ claims: { iss: `${TEST_ISSUER}/` } }), 401],
    ['an audience of another service only', () => ({ claims: { aud: 'orders-api' } }), 401],
    ['an unknown kid', () => ({ header: { kid: 'no-such-key' } }), 401],
    ['no kid', () => ({ header: { kid: undefined } }), 401],
    ['an iat in the future beyond the tolerance', (now) => ({ claims: { iat: now + 60 } }), 401],
  ])('%s', async (_label, forgery, status) => {
    const res = await withToken(await forge(forgery(epochSeconds(service().clock))));
    if (status === 200) expect(res.status).toBe(200);
    else expectInvalidToken(res);
  });
});
