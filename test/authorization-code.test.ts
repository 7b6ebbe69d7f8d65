import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
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
  tokenResponseWithIdToken,
} from './helpers/signin.js';
import { createTestUser, TEST_ISSUER, type TestClient, type TestService, useTestService } from './helpers/service.js';
import { loginAdmin } from './security/flow.js';

const running = useTestService();
const service = (): TestService => running.current();
let confidential: TestClient;
let publicClient: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  confidential = await createBrowserClient(service(), { name: 'Orders web' });
  publicClient = await createBrowserClient(service(), { type: 'public' });
  user = await createTestUser(service(), { scopes: ['profile'] });
});

const invalidGrant = { error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' };

describe('GET /authorize and the sign-in page', () => {
  it('shows an accessible sign-in page with a CSRF token, strict headers and no script', async () => {
    const { challenge } = pkce();
    const res = await request(service().app).get('/authorize').query(authorizeParams(confidential, challenge));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toMatch(
      /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+={0,2}'; form-action 'self' https:\/\/app\.example\.test; frame-ancestors 'none'; base-uri 'none'$/,
    );
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['set-cookie']).toEqual([expect.stringMatching(/^tessera_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/)]);
    expect(res.text).not.toContain('<script');
    expect(res.text).toContain('<label for="username">Username</label>');
    expect(res.text).toContain('<input id="username" name="username" type="text" autocomplete="username"');
    expect(res.text).toContain('<input id="password" name="password" type="password" autocomplete="current-password" required>');
    expect(res.text).toContain('to continue to Orders web');
    expect(formFields(res.text)).toMatchObject({ client_id: confidential.id, code_challenge: challenge, csrf_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
  });

  it('signs in, redirects with code, state and iss, and a second /authorize skips the page', async () => {
    const agent = request.agent(service().app);
    const { challenge } = pkce();
    const params = authorizeParams(confidential, challenge);
    const page = await agent.get('/authorize').query(params);
    const posted = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: user.password });
    expect(posted.status).toBe(303);
    expect(posted.headers['location']).toMatch(/^https:\/\/app\.example\.test\/callback\?code=[A-Za-z0-9_-]{43}&state=st-[0-9a-f]+&iss=http%3A%2F%2Ftessera\.test$/);
    expect(locationParams(posted).get('state')).toBe(params['state']);
    expect(posted.headers['set-cookie']).toEqual([expect.stringMatching(/^tessera_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=36000$/)]);

    const again = await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { state: 'second' }));
    expect(again.status).toBe(302);
    expect(locationParams(again).get('state')).toBe('second');
    expect(locationParams(again).get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // prompt=login asks again, whatever the session.
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { prompt: 'login' }))).status).toBe(200);
  });

  it('gives the same generic message as the password grant for a wrong password or an unknown user', async () => {
    const agent = request.agent(service().app);
    const params = authorizeParams(confidential, pkce().challenge);
    const page = await agent.get('/authorize').query(params);
    // Only this test's lines: other tests of the file (in any order) fail sign-ins of this client too.
    const linesBefore = service().logs.entries().length;
    for (const username of [user.username, 'nobody-at-all']) {
      const res = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username, password: 'wrong-password-1' });
      expect(res.status).toBe(400);
      expect(res.text).toContain('<p id="signin-error" class="error" role="alert">The username or password is incorrect.</p>');
      expect(res.text).toContain('aria-invalid="true" aria-describedby="signin-error"');
      // Focus goes to the password once a username was given.
      expect(res.text).toMatch(/type="password" autocomplete="current-password" required autofocus/);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    const failures = service().logs.entries().slice(linesBefore).filter((line) => line['event'] === 'login_failed' && line['client_id'] === confidential.id);
    expect(failures).toHaveLength(2);
  });

  it('takes the authorization request by POST as well as GET (OpenID Connect Core section 3.1.2.1)', async () => {
    const agent = request.agent(service().app);
    const { challenge } = pkce();
    const params = authorizeParams(confidential, challenge);
    const page = await agent.post('/authorize').type('form').send(params);
    expect(page.status, page.text).toBe(200);
    expect(page.text).toContain('<form method="post" action="authorize">');
    expect(formFields(page.text)).toMatchObject({ client_id: confidential.id, redirect_uri: REDIRECT_URI, code_challenge: challenge, state: params['state'] });
    const posted = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: user.password });
    expect(posted.status).toBe(303);
    // With the session, a POSTed request goes straight back with a code (303: the browser GETs the redirect URI).
    const again = await agent.post('/authorize').type('form').send(authorizeParams(confidential, pkce().challenge, { state: 'posted' }));
    expect(again.status).toBe(303);
    expect(locationParams(again).get('state')).toBe('posted');
    expect(locationParams(again).get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // A bad client or redirect URI is a page there too, and errors go back to the client with iss.
    const elsewhere = await request(service().app).post('/authorize').type('form').send({ ...params, redirect_uri: 'https://evil.example/cb' });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.headers['location']).toBeUndefined();
    expect(elsewhere.text).toContain('<p class="error" role="alert">The redirect_uri is not registered for this client.</p>');
    const none = await request(service().app).post('/authorize').type('form').send({ ...params, prompt: 'none', state: 'n' });
    expect(none.status).toBe(303);
    expect(none.headers['location']).toBe(`${REDIRECT_URI}?error=login_required&error_description=the+user+is+not+signed+in&state=n&iss=http%3A%2F%2Ftessera.test`);
  });

  it('an id_token_hint of another user is not answered with this session\'s user (OpenID Connect Core section 3.1.2.1)', async () => {
    const other = await createTestUser(service(), { scopes: ['profile'] });
    const otherAgent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(otherAgent, authorizeParams(confidential, challenge), other);
    const otherIdToken = (await exchangeCode(service().app, confidential, code, verifier)).body.id_token as string;
    const agent = request.agent(service().app);
    const mine = await signInForCode(agent, authorizeParams(confidential, challenge), user);
    const myIdToken = (await exchangeCode(service().app, confidential, mine.code, verifier)).body.id_token as string;

    const silent = await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { prompt: 'none', id_token_hint: otherIdToken, state: 's' }));
    expect(silent.status).toBe(302);
    expect(silent.headers['location']).toBe(`${REDIRECT_URI}?error=login_required&error_description=the+user+is+not+signed+in&state=s&iss=http%3A%2F%2Ftessera.test`);
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { id_token_hint: otherIdToken }))).status).toBe(200);
    const same = await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { prompt: 'none', id_token_hint: myIdToken }));
    expect(same.status).toBe(302);
    expect(locationParams(same).get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const forged = await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { id_token_hint: 'not.a.token', state: 's' }));
    expect(forged.headers['location']).toBe(
      `${REDIRECT_URI}?error=invalid_request&error_description=the+id_token_hint+is+not+an+ID+token+this+service+issued+to+this+client&state=s&iss=http%3A%2F%2Ftessera.test`,
    );
  });

  it('a response_mode other than query is refused, not answered in the query (discovery lists query alone)', async () => {
    for (const mode of ['fragment', 'form_post']) {
      const res = await request(service().app).get('/authorize').query(authorizeParams(confidential, pkce().challenge, { response_mode: mode, state: 'm' }));
      expect(res.status).toBe(302);
      expect(res.headers['location']).toBe(`${REDIRECT_URI}?error=invalid_request&error_description=only+response_mode%3Dquery+is+supported&state=m&iss=http%3A%2F%2Ftessera.test`);
    }
    const query = await request(service().app).get('/authorize').query(authorizeParams(confidential, pkce().challenge, { response_mode: 'query' }));
    expect(query.status).toBe(200);
    expect(formFields(query.text)['response_mode']).toBe('query');
  });

  it('the forms post to a relative action, so that behind a proxy that strips a path prefix of ISSUER they stay under it', async () => {
    const actionOf = (html: string) => /<form method="post" action="([^"]*)">/.exec(html)?.[1];
    const agent = request.agent(service().app);
    const params = authorizeParams(confidential, pkce().challenge);
    const page = await agent.get('/authorize').query(params);
    const failed = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: 'wrong-password-1' });
    const logout = await agent.get('/logout');
    expect(failed.status).toBe(400);
    expect(logout.status).toBe(200);
    // The browser resolves the action against the page's URL (RFC 3986 section 5.2), with the prefix the proxy saw.
    for (const [res, endpoint] of [[page, 'authorize'], [failed, 'authorize'], [logout, 'logout']] as const) {
      const action = actionOf(res.text)!;
      expect(new URL(action, `https://host.example/auth/${endpoint}?state=x`).href).toBe(`https://host.example/auth/${endpoint}`);
      expect(new URL(action, `${TEST_ISSUER}/${endpoint}?state=x`).href).toBe(`${TEST_ISSUER}/${endpoint}`);
      // form-action 'self' covers it: the same origin as the page.
      expect(res.headers['content-security-policy']).toContain("form-action 'self'");
    }
    // No page at /authorize/ or /logout/, whose relative action would resolve one level too deep.
    for (const path of ['/authorize/', '/logout/']) {
      const res = await request(service().app).get(path).query(params);
      expect(res.status, path).toBe(404);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: 'there is no such endpoint' });
    }
  });

  it('prompt=none without a session is login_required at the redirect URI', async () => {
    const res = await request(service().app).get('/authorize').query(authorizeParams(confidential, pkce().challenge, { prompt: 'none', state: 'x y' }));
    expect(res.status).toBe(302);
    expect(res.headers['location']).toBe(`${REDIRECT_URI}?error=login_required&error_description=the+user+is+not+signed+in&state=x+y&iss=http%3A%2F%2Ftessera.test`);
  });
});

describe('loopback redirect URIs (RFC 8252 section 7.3: any port)', () => {
  const notRegistered = '<p class="error" role="alert">The redirect_uri is not registered for this client.</p>';

  it('a registered port-less loopback IP URI takes any port, and the code is bound to the URI with that port', async () => {
    const native = await createBrowserClient(service(), { type: 'public', redirectUris: ['http://127.0.0.1/callback', 'http://[::1]/cb?app=1'] });
    const agent = request.agent(service().app);
    const { challenge, verifier } = pkce();
    const params = authorizeParams(native, challenge, { redirect_uri: 'http://127.0.0.1:54321/callback', state: 'loop' });
    const page = await agent.get('/authorize').query(params);
    expect(page.status, page.text).toBe(200);
    // The form may lead back to that listener (CSP form-action names its origin, port and all).
    expect(page.headers['content-security-policy']).toContain("form-action 'self' http://127.0.0.1:54321;");
    const posted = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: user.password });
    expect(posted.status).toBe(303);
    expect(posted.headers['location']).toMatch(/^http:\/\/127\.0\.0\.1:54321\/callback\?code=[A-Za-z0-9_-]{43}&state=loop&iss=http%3A%2F%2Ftessera\.test$/);
    const code = locationParams(posted).get('code')!;
    // RFC 6749 section 4.1.3: the token request names the very URI the code was sent to.
    for (const other of ['http://127.0.0.1/callback', 'http://127.0.0.1:54322/callback']) {
      const res = await exchangeCode(service().app, native, code, verifier, { redirect_uri: other });
      expect(res.status).toBe(400);
      expect(res.body).toEqual(invalidGrant);
    }
    const tokens = await exchangeCode(service().app, native, code, verifier, { redirect_uri: 'http://127.0.0.1:54321/callback' });
    expect(tokens.status, tokens.text).toBe(200);

    // [::1] too, with its query kept exactly; and an error goes back to the port the request named.
    const v6 = await request(service().app).get('/authorize').query(authorizeParams(native, challenge, { redirect_uri: 'http://[::1]:8080/cb?app=1', prompt: 'none', state: 'v6' }));
    expect(v6.status).toBe(302);
    expect(v6.headers['location']).toBe('http://[::1]:8080/cb?app=1&error=login_required&error_description=the+user+is+not+signed+in&state=v6&iss=http%3A%2F%2Ftessera.test');
  });

  it('only the port may differ: another path, query, host, scheme, localhost or a fragment is refused on the page, never redirected', async () => {
    const native = await createBrowserClient(service(), {
      type: 'public',
      redirectUris: ['http://127.0.0.1/callback', 'http://localhost/callback', 'https://app.example.test:8443/callback'],
    });
    for (const uri of [
      'http://127.0.0.1:54321/other',
      'http://127.0.0.1:54321/callback/',
      'http://127.0.0.1:54321/callback?x=1',
      'http://127.0.0.1:54321/callback#x',
      'http://127.0.0.1:99999/callback',
      'http://127.0.0.1:/callback',
      'http://127.0.0.2:54321/callback',
      'http://[::1]:54321/callback',
      'https://127.0.0.1:54321/callback',
      'http://localhost:54321/callback',
      'http://127.0.0.1.example.test:54321/callback',
      'https://app.example.test/callback',
      'https://app.example.test:9443/callback',
    ]) {
      const res = await request(service().app).get('/authorize').query(authorizeParams(native, pkce().challenge, { redirect_uri: uri }));
      expect(res.status, uri).toBe(400);
      expect(res.headers['location'], uri).toBeUndefined();
      expect(res.text, uri).toContain(notRegistered);
    }
    // localhost and https stay exact: as registered, they are accepted.
    for (const uri of ['http://localhost/callback', 'https://app.example.test:8443/callback']) {
      expect((await request(service().app).get('/authorize').query(authorizeParams(native, pkce().challenge, { redirect_uri: uri }))).status, uri).toBe(200);
    }
  });
});

describe('grant_type=authorization_code', () => {
  it('a confidential client gets an access token, a refresh token and an ID token', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge, { nonce: 'n-0S6_WzA2Mj', scope: 'openid profile' }), user);
    const res = await exchangeCode(service().app, confidential, code, verifier);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual(tokenResponseWithIdToken('openid profile'));
    const idToken = decodeJwt(res.body.id_token);
    expect(decodeProtectedHeader(res.body.id_token)).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(idToken).toEqual({
      iss: TEST_ISSUER,
      sub: user.id,
      aud: confidential.id,
      iat: expect.any(Number),
      exp: (idToken.iat as number) + 900,
      auth_time: expect.any(Number),
      nonce: 'n-0S6_WzA2Mj',
      sid: expect.stringMatching(/^[0-9a-f-]{36}$/),
      // OIDC Core §3.1.3.6: the left half of SHA-256 of the access token, base64url.
      at_hash: createHash('sha256').update(res.body.access_token).digest().subarray(0, 16).toString('base64url'),
    });
    const access = decodeJwt(res.body.access_token);
    expect(access).toMatchObject({ sub: user.id, client_id: confidential.id, scope: 'openid profile', auth_time: idToken.auth_time });
    // An openid-scoped access token works at /userinfo.
    const info = await request(service().app).get('/userinfo').set('Authorization', `Bearer ${res.body.access_token}`);
    expect(info.status).toBe(200);
    expect(info.body.sub).toBe(user.id);
    // Its refresh token rotates like any other.
    const refreshed = await request(service().app).post('/token').type('form').set('Authorization', confidential.basic).send({ grant_type: 'refresh_token', refresh_token: res.body.refresh_token });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.refresh_token).not.toBe(res.body.refresh_token);
    // openid is every user's: the refreshed token keeps it, though no role of the user names it.
    expect(refreshed.body.scope).toBe('openid profile');
  });

  it('a public client sends client_id alone and the verifier, and gets rotating refresh tokens', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(publicClient, challenge), user);
    const res = await exchangeCode(service().app, publicClient, code, verifier);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ scope: 'openid', refresh_token: expect.any(String), id_token: expect.any(String) });
    const refreshed = await request(service().app).post('/token').type('form').send({ grant_type: 'refresh_token', client_id: publicClient.id, refresh_token: res.body.refresh_token });
    expect(refreshed.status).toBe(200);
  });

  it('the access token carries the claims the client maps, as at the password grant', async () => {
    const withRoles = await createBrowserClient(service(), {});
    await service().deps.db.updateTable('clients').set({ roles_claim: true }).where('id', '=', withRoles.id).execute();
    service().deps.clients.forget(withRoles.id);
    const member = await createTestUser(service(), { roles: { [`support-${withRoles.id}`]: ['profile'] } });
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(withRoles, challenge), member);
    const res = await exchangeCode(service().app, withRoles, code, verifier);
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).roles).toEqual([`support-${withRoles.id}`]);
  });

  it('a code lives 60 seconds', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), user);
    service().clock.advance(60_000);
    const res = await exchangeCode(service().app, confidential, code, verifier);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalidGrant);
  });

  it('a code without openid gets no ID token', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge, { scope: 'profile' }), user);
    const res = await exchangeCode(service().app, confidential, code, verifier);
    expect(res.status).toBe(200);
    expect(res.body.id_token).toBeUndefined();
    expect(res.body.scope).toBe('profile');
  });

  it('a scope the user lacks is invalid_scope at the redirect URI', async () => {
    const agent = request.agent(service().app);
    const page = await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge, { scope: 'openid orders:read', state: 's1' }));
    const res = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: user.password });
    expect(res.status).toBe(303);
    expect(res.headers['location']).toBe(
      `${REDIRECT_URI}?error=invalid_scope&error_description=the+requested+scope+is+not+allowed+for+this+user+or+client&state=s1&iss=http%3A%2F%2Ftessera.test`,
    );
  });
});

describe('logout everywhere', () => {
  it('an admin ending all of a user\'s sessions ends the browser session too', async () => {
    const admin = await loginAdmin(service());
    const agent = request.agent(service().app);
    await signInForCode(agent, authorizeParams(confidential, pkce().challenge), user);
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(302);
    const ended = await request(service().app).delete(`/admin/users/${user.id}/sessions`).set('Authorization', admin.authorization);
    expect(ended.status).toBe(200);
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(200);
  });

  it('disabling a user ends the browser session for good: enabling the user again does not bring it back', async () => {
    const admin = await loginAdmin(service());
    const disabled = await createTestUser(service(), { scopes: ['profile'] });
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    // A code issued before the disable, not yet exchanged.
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), disabled);
    for (const flag of [true, false]) {
      const res = await request(service().app).patch(`/admin/users/${disabled.id}`).set('Authorization', admin.authorization).send({ disabled: flag });
      expect(res.status).toBe(200);
    }
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(200);
    expect((await exchangeCode(service().app, confidential, code, verifier)).body).toEqual(invalidGrant);
  });

  it('signing in again as the same user (prompt=login, max_age) keeps what the first session started; the next logout ends it', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), user);
    const first = (await exchangeCode(service().app, confidential, code, verifier)).body;
    // Another client asks for a fresh sign-in: the user enters the password again.
    const again = await signInForCode(agent, authorizeParams(publicClient, challenge, { prompt: 'login' }), user);
    const second = (await exchangeCode(service().app, publicClient, again.code, verifier)).body;
    const refresh = (client: TestClient, token: string) =>
      request(service().app)
        .post('/token')
        .type('form')
        .set(client.secret === undefined ? {} : { Authorization: client.basic })
        .send({ grant_type: 'refresh_token', refresh_token: token, ...(client.secret === undefined ? { client_id: client.id } : {}) });
    const kept = await refresh(confidential, first.refresh_token);
    expect(kept.status, JSON.stringify(kept.body)).toBe(200);
    // A logout of the browser's session (the hint of the second sign-in) ends both clients' sessions.
    const out = await agent.get('/logout').query({ id_token_hint: second.id_token });
    expect(out.status).toBe(200);
    expect(out.text).toContain('You are signed out.');
    expect((await refresh(confidential, kept.body.refresh_token)).body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    expect((await refresh(publicClient, second.refresh_token)).body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
  });

  it('a password change ends the browser session (the next /authorize asks again)', async () => {
    const changing = await createTestUser(service(), { scopes: ['profile'] });
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), changing);
    const tokens = (await exchangeCode(service().app, confidential, code, verifier)).body;
    const changed = await request(service().app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${tokens.access_token}`)
      .send({ current_password: changing.password, new_password: `New-${changing.password}-x9` });
    expect(changed.status).toBe(204);
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(200);
  });
});

describe('GET /logout', () => {
  it('with an id_token_hint ends the session and its refresh families, and goes to the registered URI with state', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), user);
    const tokens = (await exchangeCode(service().app, confidential, code, verifier)).body;
    const res = await agent.get('/logout').query({ id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' });
    expect(res.status).toBe(302);
    expect(res.headers['location']).toBe(`${POST_LOGOUT_URI}?state=bye`);
    expect(res.headers['set-cookie']).toEqual(['tessera_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0']);
    const refreshed = await request(service().app).post('/token').type('form').set('Authorization', confidential.basic).send({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    const info = await request(service().app).get('/userinfo').set('Authorization', `Bearer ${tokens.access_token}`);
    expect(info.status).toBe(401);
    // The next /authorize shows the page again.
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(200);
  });

  it('with the hint of another session asks first, and ends neither session by a link (RP-Initiated Logout section 2: MUST ask)', async () => {
    const first = request.agent(service().app);
    const second = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(first, authorizeParams(confidential, challenge), user);
    const tokens = (await exchangeCode(service().app, confidential, code, verifier)).body;
    await signInForCode(second, authorizeParams(confidential, pkce().challenge), user);
    const query = { id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' };
    // The same user's other browser, and a browser with no session at all (a link an attacker holding an old ID token sends).
    for (const browser of [second, request.agent(service().app)]) {
      const res = await browser.get('/logout').query(query);
      expect(res.status).toBe(200);
      expect(res.headers['location']).toBeUndefined();
      expect(res.text).toContain('<form method="post" action="logout">');
      expect(formFields(res.text)).toMatchObject({ client_id: confidential.id, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' });
    }
    for (const browser of [first, second]) expect((await browser.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(302);
    const refreshed = await request(service().app).post('/token').type('form').set('Authorization', confidential.basic).send({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(200);
  });

  it('HEAD with an id_token_hint ends nothing (HEAD is safe, as at /authorize)', async () => {
    const agent = request.agent(service().app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, challenge), user);
    const tokens = (await exchangeCode(service().app, confidential, code, verifier)).body;
    const res = await agent.head('/logout').query({ id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT_URI });
    expect(res.status).toBe(200);
    expect(res.headers['location']).toBeUndefined();
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(302);
    const refreshed = await request(service().app).post('/token').type('form').set('Authorization', confidential.basic).send({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(200);
  });

  it('without a hint asks first, on a form with a CSRF token, then shows the signed-out page', async () => {
    const agent = request.agent(service().app);
    await signInForCode(agent, authorizeParams(confidential, pkce().challenge), user);
    const ask = await agent.get('/logout');
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('<form method="post" action="logout">');
    // Still signed in: a link alone ends nothing.
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(302);
    const done = await agent.post('/logout').type('form').send(formFields(ask.text));
    expect(done.status).toBe(200);
    expect(done.text).toContain('You are signed out.');
    expect((await agent.get('/authorize').query(authorizeParams(confidential, pkce().challenge))).status).toBe(200);
  });
});

/** The reasons of the refusals of codes logged for this user, in order. */
const reasons = (userId: string) =>
  service()
    .logs.entries('authorization_code_refused')
    .filter((line) => line['user_id'] === userId)
    .map((line) => line['reason']);

describe('grant_type=authorization_code refusals, and the reason each leaves in the log', () => {

  it('a missing or empty code is invalid_request', async () => {
    for (const extra of [{}, { code: '' }]) {
      const res = await request(service().app)
        .post('/token')
        .type('form')
        .set('Authorization', confidential.basic)
        .send({ grant_type: 'authorization_code', code_verifier: pkce().verifier, redirect_uri: REDIRECT_URI, ...extra });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: 'code is required' });
    }
  });

  it('a verifier of 43 to 128 unreserved characters is taken; 42, 129 or another character is invalid_request', async () => {
    // RFC 7636 §4.1: ALPHA / DIGIT / "-" / "." / "_" / "~", 43 to 128 of them.
    for (const verifier of ['a'.repeat(43), `Az09-._~${'x'.repeat(120)}`]) {
      const agent = request.agent(service().app);
      const { code } = await signInForCode(agent, authorizeParams(confidential, createHash('sha256').update(verifier).digest('base64url')), user);
      const res = await exchangeCode(service().app, confidential, code, verifier);
      expect(res.status, `${verifier.length}: ${res.text}`).toBe(200);
    }
    const malformed = { error: 'invalid_request', error_description: 'code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)' };
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, pkce().challenge), user);
    const empty = await exchangeCode(service().app, confidential, code, '');
    expect(empty.body).toEqual({ error: 'invalid_request', error_description: 'code_verifier is required (PKCE)' });
    for (const verifier of ['a'.repeat(42), 'a'.repeat(129), `${'a'.repeat(42)}+`, `${'a'.repeat(42)}/`, ` ${'a'.repeat(43)}`, `${'a'.repeat(43)} `]) {
      const res = await exchangeCode(service().app, confidential, code, verifier);
      expect(res.status, verifier).toBe(400);
      expect(res.body, verifier).toEqual(malformed);
    }
  });

  it('an unknown or malformed code is invalid_grant (unknown_code), and so is a wrong verifier (pkce_mismatch), neither using the code up', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, challenge), user);
    const before = service().logs.entries('authorization_code_refused').length;
    for (const other of [pkce().verifier, `${code}x`, code.slice(1)]) {
      expect((await exchangeCode(service().app, confidential, other, verifier)).body).toEqual(invalidGrant);
    }
    expect(service().logs.entries('authorization_code_refused').slice(before)).toEqual([
      expect.objectContaining({ reason: 'unknown_code', client_id: confidential.id }),
      expect.objectContaining({ reason: 'unknown_code', client_id: confidential.id }),
      expect.objectContaining({ reason: 'unknown_code', client_id: confidential.id }),
    ]);
    const wrong = await exchangeCode(service().app, confidential, code, pkce().verifier);
    expect(wrong.body).toEqual(invalidGrant);
    expect(service().logs.entries('authorization_code_refused').at(-1)).toMatchObject({ reason: 'pkce_mismatch', client_id: confidential.id, user_id: user.id });
    expect((await exchangeCode(service().app, confidential, code, verifier)).status).toBe(200);
  });

  it('a code is taken until its 60th second and refused at it (expired)', async () => {
    const alive = await createTestUser(service(), { scopes: ['profile'] });
    const first = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, first.challenge), alive);
    service().clock.advance(59_999);
    expect((await exchangeCode(service().app, confidential, code, first.verifier)).status).toBe(200);
    const second = pkce();
    const late = await signInForCode(request.agent(service().app), authorizeParams(confidential, second.challenge), alive);
    service().clock.advance(60_000);
    expect((await exchangeCode(service().app, confidential, late.code, second.verifier)).body).toEqual(invalidGrant);
    expect(reasons(alive.id)).toEqual(['expired']);
  });

  it('a code whose browser session ended before the exchange is refused (session_ended)', async () => {
    const admin = await loginAdmin(service());
    const ending = await createTestUser(service(), { scopes: ['profile'] });
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, challenge), ending);
    expect((await request(service().app).delete(`/admin/users/${ending.id}/sessions`).set('Authorization', admin.authorization)).status).toBe(200);
    expect((await exchangeCode(service().app, confidential, code, verifier)).body).toEqual(invalidGrant);
    expect(reasons(ending.id)).toEqual(['session_ended']);
  });

  it('a client without the refresh_token grant gets no refresh token; without a nonce the ID token has none', async () => {
    const noRefresh = await createBrowserClient(service(), { grantTypes: ['authorization_code'] });
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(noRefresh, challenge), user);
    const res = await exchangeCode(service().app, noRefresh, code, verifier);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900, scope: 'openid', id_token: expect.any(String) });
    expect(Object.keys(decodeJwt(res.body.id_token)).sort()).toEqual(['at_hash', 'aud', 'auth_time', 'exp', 'iat', 'iss', 'sid', 'sub']);
    expect(service().logs.entries('authorization_code_exchanged').at(-1)).toEqual(
      expect.objectContaining({ client_id: noRefresh.id, user_id: user.id, family_id: expect.stringMatching(/^[0-9a-f-]{36}$/), session_id: decodeJwt(res.body.id_token).sid }),
    );
  });
});

describe('grant_type=authorization_code: refusals name the user, and a replay starts nothing', () => {

  it('another client, a missing redirect_uri, another redirect_uri: each refusal is logged with the code\'s user', async () => {
    const named = await createTestUser(service(), { scopes: ['profile'] });
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, challenge), named);
    expect((await exchangeCode(service().app, publicClient, code, verifier)).body).toEqual(invalidGrant);
    const without = await request(service().app).post('/token').type('form').set('Authorization', confidential.basic).send({ grant_type: 'authorization_code', code, code_verifier: verifier });
    expect(without.body).toEqual(invalidGrant);
    expect((await exchangeCode(service().app, confidential, code, verifier, { redirect_uri: `${REDIRECT_URI}/other` })).body).toEqual(invalidGrant);
    expect(reasons(named.id)).toEqual(['other_client', 'redirect_uri_missing', 'redirect_uri_mismatch']);
  });

  it('a second use revokes the first one\'s family as reuse and starts no family of its own', async () => {
    const replaying = await createTestUser(service(), { scopes: ['profile'] });
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(request.agent(service().app), authorizeParams(confidential, challenge), replaying);
    expect((await exchangeCode(service().app, confidential, code, verifier)).status).toBe(200);
    expect((await exchangeCode(service().app, confidential, code, verifier)).body).toEqual(invalidGrant);
    const families = await service().deps.db.selectFrom('refresh_families').select(['revoked_reason']).where('user_id', '=', replaying.id).execute();
    expect(families).toEqual([{ revoked_reason: 'reuse' }]);
  });

  it('a code issued before a password change is refused after it (user_changed)', async () => {
    const changing = await createTestUser(service(), { scopes: ['profile'] });
    const agent = request.agent(service().app);
    const first = pkce();
    const { code } = await signInForCode(agent, authorizeParams(confidential, first.challenge), changing);
    // A second code from the same browser session, before the change.
    const second = pkce();
    const skipped = await agent.get('/authorize').query(authorizeParams(confidential, second.challenge));
    expect(skipped.status).toBe(302);
    const tokens = (await exchangeCode(service().app, confidential, code, first.verifier)).body;
    const changed = await request(service().app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${tokens.access_token}`)
      .send({ current_password: changing.password, new_password: `New-${changing.password}-x9` });
    expect(changed.status).toBe(204);
    expect((await exchangeCode(service().app, confidential, locationParams(skipped).get('code')!, second.verifier)).body).toEqual(invalidGrant);
    expect(reasons(changing.id)).toEqual(['user_changed']);
  });
});
