import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeParams,
  createBrowserClient,
  exchangeCode,
  formFields,
  locationParams,
  pkce,
  POST_LOGOUT_URI,
  REDIRECT_URI,
  signInForCode,
} from '../helpers/signin.js';
import { createTestUser, TEST_ISSUER, type TestClient, type TestService, useServicesPerTest } from '../helpers/service.js';

/**
 * ATTACKS.md section J: browser sign-in. Every answer that must not leave Tessera is checked for
 * the absence of a Location header as well as for its page; every error that goes back to the
 * client is checked whole (error, description, state, iss).
 */
const services = useServicesPerTest('j');
let service: TestService;
let client: TestClient;
let other: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  service = await services.start({});
  client = await createBrowserClient(service);
  other = await createBrowserClient(service, { redirectUris: ['https://other.example.test/cb'], postLogoutRedirectUris: ['https://other.example.test/bye'] });
  user = await createTestUser(service, { scopes: ['profile'] });
});
afterAll(() => service?.close());

const ISS = encodeURIComponent(TEST_ISSUER);
const app = () => service.app;

/** An HTML error page, never a redirect. */
function expectErrorPage(res: request.Response, status: number, message: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['location']).toBeUndefined();
  expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
  expect(res.text).toContain(`<p class="error" role="alert">${message}</p>`);
}

describe('J1 open redirect through redirect_uri and post_logout_redirect_uri', () => {
  it.each([
    ['a path added', `${REDIRECT_URI}/more`],
    ['a query added', `${REDIRECT_URI}?next=https://evil.example`],
    ['a fragment', `${REDIRECT_URI}#x`],
    ['another port', 'https://app.example.test:8443/callback'],
    ['a case change', 'https://APP.example.test/callback'],
    ['http instead of https', 'http://app.example.test/callback'],
    ['a trailing slash', `${REDIRECT_URI}/`],
    ['another client\'s', 'https://other.example.test/cb'],
    ['an attacker\'s', 'https://evil.example/cb'],
  ])('%s: an error page, never a redirect', async (_what, redirectUri) => {
    const res = await request(app()).get('/authorize').query(authorizeParams(client, pkce().challenge, { redirect_uri: redirectUri }));
    expectErrorPage(res, 400, 'The redirect_uri is not registered for this client.');
  });

  it('an unknown client, or none, is an error page even with a valid-looking redirect_uri', async () => {
    expectErrorPage(await request(app()).get('/authorize').query(authorizeParams({ id: 'nobody' }, pkce().challenge)), 400, 'There is no such client.');
    const { client_id: _dropped, ...rest } = authorizeParams(client, pkce().challenge);
    expectErrorPage(await request(app()).get('/authorize').query(rest), 400, 'Client_id is required.');
  });

  it('a redirect_uri left out is one only when exactly one is registered', async () => {
    const two = await createBrowserClient(service, { redirectUris: [REDIRECT_URI, 'https://app.example.test/other'] });
    const { redirect_uri: _dropped, ...rest } = authorizeParams(two, pkce().challenge);
    expectErrorPage(await request(app()).get('/authorize').query(rest), 400, 'Redirect_uri is required.');
    const { redirect_uri: _also, ...single } = authorizeParams(client, pkce().challenge);
    expect((await request(app()).get('/authorize').query(single)).status).toBe(200);
  });

  it('a repeated redirect_uri is an error page', async () => {
    const query = new URLSearchParams(authorizeParams(client, pkce().challenge));
    query.append('redirect_uri', 'https://evil.example/cb');
    expectErrorPage(await request(app()).get(`/authorize?${query}`), 400, 'The parameter redirect_uri is repeated.');
  });

  it('a redirect_uri changed in the sign-in form is an error page too', async () => {
    const agent = request.agent(app());
    const page = await agent.get('/authorize').query(authorizeParams(client, pkce().challenge));
    const res = await agent.post('/authorize').type('form').send({ ...formFields(page.text), redirect_uri: 'https://evil.example/cb', username: user.username, password: user.password });
    expectErrorPage(res, 400, 'The redirect_uri is not registered for this client.');
  });

  it('post_logout_redirect_uri: an unregistered one, another client\'s, or one without a client is a page and ends nothing', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const tokens = (await exchangeCode(app(), client, code, verifier)).body;
    for (const [query, message] of [
      [{ id_token_hint: tokens.id_token, post_logout_redirect_uri: 'https://evil.example/' }, 'The post_logout_redirect_uri is not registered for this client.'],
      [{ id_token_hint: tokens.id_token, post_logout_redirect_uri: 'https://other.example.test/bye' }, 'The post_logout_redirect_uri is not registered for this client.'],
      [{ id_token_hint: tokens.id_token, client_id: other.id, post_logout_redirect_uri: 'https://other.example.test/bye' }, 'Client_id does not match the id_token_hint.'],
      [{ post_logout_redirect_uri: POST_LOGOUT_URI }, 'Post_logout_redirect_uri needs an id_token_hint or a client_id.'],
    ] as const) {
      expectErrorPage(await agent.get('/logout').query(query), 400, message);
    }
    // Still signed in, and the refresh token still works: a refused logout ends nothing.
    expect((await agent.get('/authorize').query(authorizeParams(client, pkce().challenge))).status).toBe(302);
    const refreshed = await request(app()).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(200);
  });
});

describe('J2 code replay', () => {
  it('a second use is invalid_grant and revokes what the first issued', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const first = await exchangeCode(app(), client, code, verifier);
    expect(first.status).toBe(200);
    const second = await exchangeCode(app(), client, code, verifier);
    expect(second.status).toBe(400);
    expect(second.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    const refreshed = await request(app()).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token });
    expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    expect((await request(app()).get('/userinfo').set('Authorization', `Bearer ${first.body.access_token}`)).status).toBe(401);
    expect(service.logs.entries('authorization_code_reuse_detected')).toContainEqual(expect.objectContaining({ level: 'warn', client_id: client.id, user_id: user.id }));
  });
});

describe('J2 code replay, raced', () => {
  it('two uses at once: one wins, and the loser ends what the winner got', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const answers = await Promise.all([exchangeCode(app(), client, code, verifier), exchangeCode(app(), client, code, verifier)]);
    expect(answers.map((res) => res.status).sort()).toEqual([200, 400]);
    const winner = answers.find((res) => res.status === 200)!;
    const refreshed = await request(app()).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: winner.body.refresh_token });
    expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
  });
});

describe('J3 PKCE downgrade, a wrong or missing verifier, another client, another redirect_uri', () => {
  const redirectError = (description: string, state: string) =>
    `${REDIRECT_URI}?error=invalid_request&error_description=${new URLSearchParams({ d: description }).toString().slice(2)}&state=${state}&iss=${ISS}`;

  it.each([
    ['no code_challenge', { code_challenge: '' }, 'code_challenge is required (PKCE with S256)'],
    ['plain', { code_challenge_method: 'plain' }, 'code_challenge_method must be S256'],
    ['no code_challenge_method (plain by default, RFC 7636 section 4.3)', { code_challenge_method: '' }, 'code_challenge_method must be S256'],
    ['a challenge that is no S256 value', { code_challenge: 'short' }, 'code_challenge must be 43 base64url characters (S256)'],
  ])('%s: invalid_request at the redirect URI', async (_what, change, description) => {
    const res = await request(app()).get('/authorize').query(authorizeParams(client, pkce().challenge, { state: 'pk', ...change }));
    expect(res.status).toBe(302);
    expect(res.headers['location']).toBe(redirectError(description, 'pk'));
  });

  it('a missing or malformed verifier is invalid_request, a wrong one invalid_grant; none of them uses the code up', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const missing = await request(app()).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI });
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({ error: 'invalid_request', error_description: 'code_verifier is required (PKCE)' });
    const malformed = await exchangeCode(app(), client, code, 'short');
    expect(malformed.body).toEqual({ error: 'invalid_request', error_description: 'code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)' });
    const wrong = await exchangeCode(app(), client, code, pkce().verifier);
    expect(wrong.status).toBe(400);
    expect(wrong.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    expect((await exchangeCode(app(), client, code, verifier)).status).toBe(200);
  });

  it('a code redeemed by another client, or with another redirect_uri, is invalid_grant', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const stolen = await exchangeCode(app(), other, code, verifier);
    expect(stolen.status).toBe(400);
    expect(stolen.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    const publicThief = await createBrowserClient(service, { type: 'public' });
    expect((await exchangeCode(app(), publicThief, code, verifier)).body.error).toBe('invalid_grant');
    const elsewhere = await exchangeCode(app(), client, code, verifier, { redirect_uri: 'https://app.example.test/other' });
    expect(elsewhere.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    expect(service.logs.entries('authorization_code_refused').map((line) => line['reason'])).toEqual(expect.arrayContaining(['other_client', 'redirect_uri_mismatch']));
  });

  it('a code whose request named its redirect_uri needs that redirect_uri at the token endpoint (RFC 6749 section 4.1.3)', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const form = { grant_type: 'authorization_code', code, code_verifier: verifier };
    const without = await request(app()).post('/token').type('form').set('Authorization', client.basic).send(form);
    expect(without.status).toBe(400);
    expect(without.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    expect(service.logs.entries('authorization_code_refused').map((line) => line['reason'])).toContain('redirect_uri_missing');
    // Refused without using the code up.
    expect((await exchangeCode(app(), client, code, verifier)).status).toBe(200);
  });

  it('a code whose request left redirect_uri out is exchanged without one, or with the registered one', async () => {
    for (const extra of [{}, { redirect_uri: REDIRECT_URI }]) {
      const agent = request.agent(app());
      const { verifier, challenge } = pkce();
      const { redirect_uri: _dropped, ...params } = authorizeParams(client, challenge);
      const { code } = await signInForCode(agent, params, user);
      const res = await request(app()).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'authorization_code', code, code_verifier: verifier, ...extra });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
  });

  it('a public client cannot authenticate with a secret it does not have, nor a confidential one without its secret', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const noSecret = await request(app()).post('/token').type('form').send({ grant_type: 'authorization_code', client_id: client.id, code, code_verifier: verifier });
    expect(noSecret.status).toBe(401);
    expect(noSecret.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });
});

describe('J4 CSRF on the sign-in form, and session fixation', () => {
  it('a form without its CSRF token, or with another browser\'s, is refused with a page and signs no one in', async () => {
    const victim = request.agent(app());
    const attacker = request.agent(app());
    const params = authorizeParams(client, pkce().challenge);
    const victimPage = await victim.get('/authorize').query(params);
    const attackerPage = await attacker.get('/authorize').query(params);
    const { csrf_token: _dropped, ...withoutToken } = formFields(victimPage.text);
    for (const form of [withoutToken, formFields(attackerPage.text), { ...formFields(victimPage.text), csrf_token: 'x'.repeat(43) }]) {
      const res = await victim.post('/authorize').type('form').send({ ...form, username: user.username, password: user.password });
      expectErrorPage(res, 403, 'This sign-in form has expired or did not come from this site. Go back to the application and sign in again.');
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    // A cross-site POST carries no CSRF cookie at all.
    const bare = await request(app()).post('/authorize').type('form').send({ ...formFields(victimPage.text), username: user.username, password: user.password });
    expect(bare.status).toBe(403);
  });

  it('a session cookie value fixed before sign-in is never the signed-in one, and a previous session ends', async () => {
    const fixed = 'A'.repeat(43);
    const agent = request.agent(app());
    const params = authorizeParams(client, pkce().challenge);
    const page = await agent.get('/authorize').set('Cookie', `tessera_session=${fixed}`).query(params);
    const csrf = /tessera_csrf=([^;]+)/.exec(String(page.headers['set-cookie']))![1]!;
    const signedIn = await request(app())
      .post('/authorize')
      .set('Cookie', `tessera_session=${fixed}; tessera_csrf=${csrf}`)
      .type('form')
      .send({ ...formFields(page.text), username: user.username, password: user.password });
    expect(signedIn.status).toBe(303);
    const first = /^tessera_session=([A-Za-z0-9_-]{43});/.exec(signedIn.headers['set-cookie']![0]!)![1]!;
    expect(first).not.toBe(fixed);
    // The fixed value opens nothing.
    expect((await request(app()).get('/authorize').set('Cookie', `tessera_session=${fixed}`).query(authorizeParams(client, pkce().challenge))).status).toBe(200);
    // Signing in again (prompt=login) rotates the value and ends the session the browser held.
    const again = await request(app()).get('/authorize').set('Cookie', `tessera_session=${first}; tessera_csrf=${csrf}`).query({ ...params, prompt: 'login' });
    const rotated = await request(app())
      .post('/authorize')
      .set('Cookie', `tessera_session=${first}; tessera_csrf=${csrf}`)
      .type('form')
      .send({ ...formFields(again.text), username: user.username, password: user.password });
    const second = /^tessera_session=([A-Za-z0-9_-]{43});/.exec(rotated.headers['set-cookie']![0]!)![1]!;
    expect(second).not.toBe(first);
    expect((await request(app()).get('/authorize').set('Cookie', `tessera_session=${first}`).query(authorizeParams(client, pkce().challenge))).status).toBe(200);
    expect((await request(app()).get('/authorize').set('Cookie', `tessera_session=${second}`).query(authorizeParams(client, pkce().challenge))).status).toBe(302);
  });
});

describe('J5 clickjacking, CSP and reflected input', () => {
  it('every page forbids framing and scripts, and escapes what it echoes', async () => {
    const evil = '"><script>alert(1)</script>';
    const named = await createBrowserClient(service, { name: '<img src=x onerror=alert(1)>' });
    const agent = request.agent(app());
    const page = await agent.get('/authorize').query(authorizeParams(named, pkce().challenge, { state: evil, nonce: 'n"><b>' }));
    const failed = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: evil, password: 'wrong-password-1' });
    const errorPage = await request(app()).get('/authorize').query({ client_id: evil });
    const logoutPage = await agent.get('/logout');
    for (const res of [page, failed, errorPage, logoutPage]) {
      expect(res.headers['content-security-policy']).toMatch(/^default-src 'none'; style-src 'sha256-[^']+'; form-action 'self'[^;]*; frame-ancestors 'none'; base-uri 'none'$/);
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.text).not.toMatch(/<script|<img|<b>/);
    }
    expect(page.text).toContain('value="&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;"');
    expect(page.text).toContain('to continue to &#60;img src=x onerror=alert(1)&#62;');
    expect(failed.text).toContain('value="&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;"');
  });
});

describe('J6 state, nonce, and ID tokens kept apart from access tokens', () => {
  it('state comes back byte for byte, nonce lands in the ID token', async () => {
    const state = 'a b&c=d+e/f?g%h~ü';
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code, redirect } = await signInForCode(agent, authorizeParams(client, challenge, { state, nonce: 'n-123 456' }), user);
    expect(redirect.get('state')).toBe(state);
    const tokens = (await exchangeCode(app(), client, code, verifier)).body;
    expect(decodeJwt(tokens.id_token).nonce).toBe('n-123 456');
    // With a session, the 302 carries the state too.
    const again = await agent.get('/authorize').query(authorizeParams(client, pkce().challenge, { state }));
    expect(locationParams(again).get('state')).toBe(state);
  });

  it('a state over 2048 characters is refused on the page, never echoed to the redirect URI; a nonce over 255 is invalid_request there', async () => {
    const { challenge } = pkce();
    const long = 's'.repeat(2049);
    for (const extra of [{}, { response_type: 'token' }, { code_challenge_method: 'plain' }] as Record<string, string>[]) {
      const res = await request(app()).get('/authorize').query(authorizeParams(client, challenge, { state: long, ...extra }));
      expectErrorPage(res, 400, 'State has at most 2048 characters.');
      expect(res.text).not.toContain(long);
    }
    expectErrorPage(await request(app()).post('/authorize').type('form').send(authorizeParams(client, challenge, { state: long })), 400, 'State has at most 2048 characters.');
    // 2048 is still a sign-in page, and the state comes back whole.
    const agent = request.agent(app());
    const { redirect } = await signInForCode(agent, authorizeParams(client, challenge, { state: 's'.repeat(2048) }), user);
    expect(redirect.get('state')).toBe('s'.repeat(2048));
    // /logout has the same bound.
    expectErrorPage(await request(app()).get('/logout').query({ client_id: client.id, post_logout_redirect_uri: POST_LOGOUT_URI, state: long }), 400, 'State has at most 2048 characters.');
    // A long nonce is not echoed (it would go into the ID token): invalid_request at the redirect URI, with the (short) state.
    const nonce = await request(app()).get('/authorize').query(authorizeParams(client, challenge, { state: 'n', nonce: 'n'.repeat(256) }));
    expect(nonce.status).toBe(302);
    expect(nonce.headers['location']).toBe(
      `${REDIRECT_URI}?error=invalid_request&error_description=nonce+has+at+most+255+printable+ASCII+characters&state=n&iss=${ISS}`,
    );
  });

  it('an ID token is no access token, and an access token is no id_token_hint', async () => {
    const agent = request.agent(app());
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const tokens = (await exchangeCode(app(), client, code, verifier)).body;
    const asAccess = await request(app()).get('/userinfo').set('Authorization', `Bearer ${tokens.id_token}`);
    expect(asAccess.status).toBe(401);
    expect(asAccess.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });
    expectErrorPage(await agent.get('/logout').query({ id_token_hint: tokens.access_token }), 400, 'The id_token_hint is not an ID token this service issued.');
  });
});

describe('J7 the same brute-force limits as the password grant', () => {
  it('login_ip counts page posts; a limited source gets the page with 429 and Retry-After, and the right password changes nothing', async () => {
    const limited = await services.forTest({ LOGIN_IP_LIMIT: '2' });
    const agent = request.agent(limited.app);
    const page = await agent.get('/authorize').query(authorizeParams(client, pkce().challenge));
    const form = formFields(page.text);
    for (let i = 0; i < 2; i++) expect((await agent.post('/authorize').type('form').send({ ...form, username: user.username, password: 'wrong-password-1' })).status).toBe(400);
    const refused = await agent.post('/authorize').type('form').send({ ...form, username: user.username, password: user.password });
    expectErrorPage(refused, 429, 'Too many requests; retry later.');
    expect(refused.headers['retry-after']).toMatch(/^[0-9]+$/);
  });

  it('the account layers are shared with the password grant: failures there count here', async () => {
    const limited = await services.forTest({ LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '2' });
    const gateway = await createBrowserClient(limited, { grantTypes: ['password', 'authorization_code'] });
    const viaGrant = await request(limited.app).post('/token').type('form').set('Authorization', gateway.basic).send({ grant_type: 'password', username: user.username, password: 'wrong-password-1' });
    expect(viaGrant.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
    const agent = request.agent(limited.app);
    const page = await agent.get('/authorize').query(authorizeParams(client, pkce().challenge));
    const form = formFields(page.text);
    expect((await agent.post('/authorize').type('form').send({ ...form, username: user.username, password: 'wrong-password-1' })).status).toBe(400);
    const refused = await agent.post('/authorize').type('form').send({ ...form, username: user.username, password: user.password });
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toMatch(/^[0-9]+$/);
    expect(refused.text).toContain('<p id="signin-error" class="error" role="alert">Too many attempts. Wait a moment, then try again.</p>');
    expect(refused.headers['set-cookie']).toBeUndefined();
  });
});

describe('J8 mix-up: every authorization response names its issuer', () => {
  it('iss is on success and on every error sent back to the client', async () => {
    const agent = request.agent(app());
    const { redirect } = await signInForCode(agent, authorizeParams(client, pkce().challenge), user);
    expect(redirect.get('iss')).toBe(TEST_ISSUER);
    for (const change of [{ response_type: 'token' }, { scope: 'admin' }, { prompt: 'none', code_challenge_method: 'plain' }] as Record<string, string>[]) {
      const res = await request(app()).get('/authorize').query(authorizeParams(client, pkce().challenge, change));
      expect(res.status).toBe(302);
      expect(locationParams(res).get('iss')).toBe(TEST_ISSUER);
      expect(locationParams(res).get('error')).toMatch(/^(unsupported_response_type|invalid_scope|invalid_request)$/);
    }
  });
});
