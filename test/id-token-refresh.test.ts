import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { authorizeParams, createBrowserClient, exchangeCode, pkce, signInForCode, tokenResponseWithIdToken } from './helpers/signin.js';
import { createTestClient, createTestUser, passwordGrant, TEST_ISSUER, type TestClient, type TestService, useTestService } from './helpers/service.js';

// OpenID Connect Core §12.2: a refresh of a session that began with an ID token gets a new one.

const running = useTestService();
const service = (): TestService => running.current();
let confidential: TestClient;
let publicClient: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  confidential = await createBrowserClient(service());
  publicClient = await createBrowserClient(service(), { type: 'public' });
  user = await createTestUser(service(), { scopes: ['profile'] });
});

const MINUTE = 60_000;

/** OIDC Core §3.1.3.6: the left half of SHA-256 over the access token, base64url. */
function atHashOf(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest().subarray(0, 16).toString('base64url');
}

/** Signs `user` in for `client` with a nonce and exchanges the code: the login's tokens and its ID token's claims. */
async function codeLogin(client: TestClient, scope = 'openid profile', agent = request.agent(service().app)) {
  const { verifier, challenge } = pkce();
  const { code } = await signInForCode(agent, authorizeParams(client, challenge, { scope, nonce: 'n-0S6_WzA2Mj' }), user);
  const res = await exchangeCode(service().app, client, code, verifier);
  expect(res.status, res.text).toBe(200);
  const body = res.body as { access_token: string; refresh_token: string; id_token: string };
  return { ...body, idClaims: decodeJwt(body.id_token), agent };
}

function refresh(client: TestClient, refreshToken: string, extra: Record<string, string> = {}): request.Test {
  const req = request(service().app).post('/token').type('form');
  if (client.secret === undefined) extra = { client_id: client.id, ...extra };
  else req.set('Authorization', client.basic);
  return req.send({ grant_type: 'refresh_token', refresh_token: refreshToken, ...extra });
}

/** Verifies an ID token as a relying party does: against the published JWKS, at the service's time. */
async function verifyIdToken(token: string, client: TestClient): Promise<{ payload: JWTPayload; header: Record<string, unknown> }> {
  const jwks = (await request(service().app).get('/.well-known/jwks.json')).body as JSONWebKeySet;
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: TEST_ISSUER,
    audience: client.id,
    typ: 'JWT',
    algorithms: ['RS256'],
    currentDate: new Date(service().clock.now()),
  });
  return { payload, header: protectedHeader };
}

/** The §12.2 claims of a refreshed ID token, against the login's ID token and the new access token. */
async function expectRefreshedIdToken(idToken: string, client: TestClient, original: JWTPayload, accessToken: string): Promise<void> {
  const { payload, header } = await verifyIdToken(idToken, client);
  expect(header).toEqual({ alg: 'RS256', typ: 'JWT', kid: service().deps.keys.current().signing.kid });
  const now = Math.floor(service().clock.now() / 1000);
  // Exactly these claims: no `nonce` (the original had one) and no `azp` (the original had none).
  expect(payload).toEqual({
    iss: TEST_ISSUER,
    sub: user.id,
    aud: client.id,
    iat: now,
    exp: now + 900,
    auth_time: original['auth_time'],
    sid: original['sid'],
    at_hash: atHashOf(accessToken),
  });
  expect(original['nonce']).toBe('n-0S6_WzA2Mj');
}

describe('the refresh grant and ID tokens (OpenID Connect Core section 12.2)', () => {
  it('a session a code exchange started gets a new ID token: same sub, aud and sid, the original auth_time, no nonce, at_hash of the new access token', async () => {
    const login = await codeLogin(confidential);
    service().clock.advance(5 * MINUTE);
    const res = await refresh(confidential, login.refresh_token);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual(tokenResponseWithIdToken('openid profile'));
    await expectRefreshedIdToken(res.body.id_token, confidential, login.idClaims, res.body.access_token);
    // auth_time is the sign-in's, five minutes before this ID token was issued.
    expect(decodeJwt(res.body.id_token).iat! - (login.idClaims['auth_time'] as number)).toBe(300);

    // A retry of that refresh within the grace window is answered like it, ID token and all.
    service().clock.advance(2_000);
    const retry = await refresh(confidential, login.refresh_token);
    expect(retry.status, retry.text).toBe(200);
    expect(retry.body.refresh_token).toBe(res.body.refresh_token);
    await expectRefreshedIdToken(retry.body.id_token, confidential, login.idClaims, retry.body.access_token);

    // The refreshed ID token is a good id_token_hint: a logout with it ends the session, silently.
    const out = await login.agent.get('/logout').query({ id_token_hint: res.body.id_token });
    expect(out.status).toBe(200);
    expect(out.text).toContain('You are signed out.');
    expect((await refresh(confidential, res.body.refresh_token)).body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
  });

  it('POST /refresh with a JSON body answers the same, for a public client', async () => {
    const login = await codeLogin(publicClient, 'openid');
    service().clock.advance(3 * MINUTE);
    const res = await request(service().app).post('/refresh').send({ refresh_token: login.refresh_token, client_id: publicClient.id });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual(tokenResponseWithIdToken('openid', expect.any(String)));
    await expectRefreshedIdToken(res.body.id_token, publicClient, login.idClaims, res.body.access_token);
  });

  it('a refresh whose scope leaves out openid gets no ID token; the next one without scope gets openid and an ID token again', async () => {
    const login = await codeLogin(confidential);
    const narrowed = await refresh(confidential, login.refresh_token, { scope: 'profile' });
    expect(narrowed.status, narrowed.text).toBe(200);
    expect(narrowed.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900, scope: 'profile', refresh_token: expect.any(String) });
    service().clock.advance(MINUTE);
    const full = await refresh(confidential, narrowed.body.refresh_token);
    expect(full.body.scope).toBe('openid profile');
    await expectRefreshedIdToken(full.body.id_token, confidential, login.idClaims, full.body.access_token);
  });

  it('after a new sign-in in the same browser hands the session over, the ID token names the new browser session', async () => {
    const first = await codeLogin(confidential);
    // Another client asks for a fresh sign-in (prompt=login): the family moves to the new session.
    const { verifier, challenge } = pkce();
    const again = await signInForCode(first.agent, authorizeParams(publicClient, challenge, { prompt: 'login' }), user);
    const second = decodeJwt((await exchangeCode(service().app, publicClient, again.code, verifier)).body.id_token as string);
    expect(second['sid']).not.toBe(first.idClaims['sid']);
    const res = await refresh(confidential, first.refresh_token);
    expect(res.status, res.text).toBe(200);
    const claims = decodeJwt(res.body.id_token);
    // The session a logout with this token as id_token_hint ends, and the family with it; the
    // authentication it asserts is still the first one.
    expect(claims['sid']).toBe(second['sid']);
    expect(claims['auth_time']).toBe(first.idClaims['auth_time']);
  });

  it('a password-grant session gets no ID token on refresh, even with openid in its scope (none was issued at login)', async () => {
    const gateway = await createTestClient(service(), {
      grantTypes: ['password', 'refresh_token'],
      scopes: ['openid', 'profile'],
      defaultScopes: ['openid', 'profile'],
    });
    const member = await createTestUser(service(), { scopes: ['openid', 'profile'] });
    const login = await passwordGrant(service().app, gateway, member);
    expect(login.status, login.text).toBe(200);
    expect(login.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900, scope: 'openid profile', refresh_token: expect.any(String) });

    const res = await refresh(gateway, login.body.refresh_token);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900, scope: 'openid profile', refresh_token: expect.any(String) });
    const viaRefresh = await request(service().app).post('/refresh').set('Authorization', gateway.basic).send({ refresh_token: res.body.refresh_token });
    expect(viaRefresh.status, viaRefresh.text).toBe(200);
    expect(viaRefresh.body).not.toHaveProperty('id_token');
    expect(viaRefresh.body.scope).toBe('openid profile');
  });
});
