/**
 * Interoperability (issue 5): clients that nobody here wrote work with Tessera, over real HTTP on
 * 127.0.0.1 with ISSUER naming the real port:
 *
 * - openid-client (panva): discovery, then the password, refresh and client-credentials grants,
 *   and the authorization code flow with PKCE and OpenID Connect, for a confidential and a public
 *   client, through Tessera's sign-in page, then RP-initiated logout;
 * - oauth4webapi (panva): its strict discovery, token-response and RFC 9068 access-token validation;
 * - jose createRemoteJWKSet: one long-lived verifier with its default caching verifies every token
 *   across a full key rotation (next -> active -> retired -> removed) without a single failure;
 * - PyJWT's PyJWKClient, run by Debian's /usr/bin/python3, when that has PyJWT.
 *
 * If one of these libraries rejects something Tessera does, that is a Tessera bug: fix Tessera,
 * never the test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import * as openid from 'openid-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { KeyStore } from '../src/keys/key-store.js';
import { listKeyStatus, maintainSigningKeys, promotionDelaySeconds, retentionSeconds, rotateSigningKey } from '../src/keys/lifecycle.js';
import { findPackageRoot } from '../src/package-root.js';
import { startKeyMaintenance } from '../src/service.js';
import { createFakeClock, type FakeClock } from './helpers/clock.js';
import { forgeJwt } from './helpers/forge.js';
import { keysFollow, makeNextKeyDue } from './helpers/keys.js';
import { type LoopbackTessera, startLoopbackTessera } from './helpers/loopback-tessera.js';
import { createTestClient, createTestUser, type TestClient } from './helpers/service.js';

const JWKS_PATH = '/.well-known/jwks.json';
const GRANTS = ['password', 'refresh_token', 'client_credentials'] as const;
const SCOPES = ['profile', 'orders:read', 'orders:write'];
const DEFAULT_ACCESS_TOKEN_TTL = 15 * 60;

/** What a downstream service does with an access token: verify it against the issuer's JWKS. */
async function verifyWithJose(tessera: LoopbackTessera, token: string, jwks = createRemoteJWKSet(tessera.jwksUrl)) {
  return jwtVerify(token, jwks, { issuer: tessera.issuer, audience: tessera.issuer, typ: 'at+jwt', algorithms: ['RS256'] });
}

/** RFC 6749 §3.3: a scope is a set; its order carries no meaning. */
function scopeSet(scope: unknown): string[] {
  expect(typeof scope).toBe('string');
  return (scope as string).split(' ').sort();
}

/** RFC 9068 §2.2 claims of a user's token (password or refresh grant). */
function expectUserToken(payload: JWTPayload, expected: { issuer: string; sub: string; clientId: string; scope: string }) {
  expect(payload).toMatchObject({
    iss: expected.issuer,
    aud: expected.issuer,
    sub: expected.sub,
    client_id: expected.clientId,
    jti: expect.any(String),
    iat: expect.any(Number),
    exp: expect.any(Number),
    auth_time: expect.any(Number),
    sid: expect.any(String),
  });
  expect(scopeSet(payload['scope'])).toEqual(scopeSet(expected.scope));
  expect(payload.exp! - payload.iat!).toBe(DEFAULT_ACCESS_TOKEN_TTL);
}

/** RFC 9068 §2.2 claims of a client's own token (client credentials): `sub` is the client id, no session. */
function expectClientToken(payload: JWTPayload, expected: { issuer: string; clientId: string; scope: string }) {
  expect(payload).toMatchObject({
    iss: expected.issuer,
    aud: expected.issuer,
    sub: expected.clientId,
    client_id: expected.clientId,
    jti: expect.any(String),
  });
  expect(scopeSet(payload['scope'])).toEqual(scopeSet(expected.scope));
  expect(payload).not.toHaveProperty('sid');
  expect(payload).not.toHaveProperty('auth_time');
  expect(payload.exp! - payload.iat!).toBe(DEFAULT_ACCESS_TOKEN_TTL);
}

describe('openid-client (panva) against Tessera', () => {
  let tessera: LoopbackTessera;
  let client: TestClient;
  let user: { id: string; username: string; password: string };

  beforeAll(async () => {
    // The libraries check exp against the real clock, so this service's clock starts at real time.
    tessera = await startLoopbackTessera({ clock: createFakeClock(Date.now()) });
    client = await createTestClient(tessera.service, { grantTypes: [...GRANTS], scopes: SCOPES, defaultScopes: ['profile'] });
    user = await createTestUser(tessera.service, { scopes: ['profile', 'orders:read'] });
  });
  afterAll(async () => {
    await tessera?.close();
  });

  /** The library's own discovery from the issuer identifier; http, so allowInsecureRequests. */
  function discover(auth: 'basic' | 'post', algorithm?: 'oidc' | 'oauth2') {
    const authentication = auth === 'basic' ? openid.ClientSecretBasic(client.secret) : openid.ClientSecretPost(client.secret);
    return openid.discovery(new URL(tessera.issuer), client.id, undefined, authentication, {
      execute: [openid.allowInsecureRequests],
      ...(algorithm ? { algorithm } : {}),
    });
  }

  it('discovers Tessera from its issuer identifier at both well-known locations', async () => {
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      const config = await discover('basic', algorithm);
      expect(config.serverMetadata()).toMatchObject({
        issuer: tessera.issuer,
        token_endpoint: `${tessera.issuer}/token`,
        jwks_uri: `${tessera.issuer}${JWKS_PATH}`,
        introspection_endpoint: `${tessera.issuer}/introspect`,
        revocation_endpoint: `${tessera.issuer}/revoke`,
        userinfo_endpoint: `${tessera.issuer}/userinfo`,
      });
    }
    const discovered = tessera.requests.map((request) => request.path);
    expect(discovered).toContain('/.well-known/openid-configuration');
    expect(discovered).toContain('/.well-known/oauth-authorization-server');
  });

  it('gets tokens with the password grant, then rotates them with refreshTokenGrant (client_secret_basic)', async () => {
    const config = await discover('basic');

    const login = await openid.genericGrantRequest(config, 'password', {
      username: user.username,
      password: user.password,
      scope: 'profile orders:read',
    });
    expect(login).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL });
    expect(scopeSet(login.scope)).toEqual(['orders:read', 'profile']);
    expect(login.expiresIn()).toBeGreaterThan(DEFAULT_ACCESS_TOKEN_TTL - 5);
    expect(login.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const first = await verifyWithJose(tessera, login.access_token);
    expectUserToken(first.payload, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'profile orders:read' });

    // A refresh may narrow the scope (RFC 6749 §6); the refresh token rotates, the session (sid) stays.
    const refreshed = await openid.refreshTokenGrant(config, login.refresh_token!, { scope: 'orders:read' });
    expect(refreshed).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL, scope: 'orders:read' });
    expect(refreshed.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(refreshed.refresh_token).not.toBe(login.refresh_token);
    const second = await verifyWithJose(tessera, refreshed.access_token);
    expectUserToken(second.payload, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'orders:read' });
    expect(second.payload['sid']).toBe(first.payload['sid']);
    expect(second.payload.jti).not.toBe(first.payload.jti);

    // And the successor refreshes again.
    const again = await openid.refreshTokenGrant(config, refreshed.refresh_token!);
    expect(again.refresh_token).not.toBe(refreshed.refresh_token);
    expect((await verifyWithJose(tessera, again.access_token)).payload['sid']).toBe(first.payload['sid']);
  });

  it('gets a token with clientCredentialsGrant (client_secret_post), without a refresh token', async () => {
    const config = await discover('post');

    const tokens = await openid.clientCredentialsGrant(config, { scope: 'orders:write' });
    expect(tokens).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL, scope: 'orders:write' });
    expect(tokens).not.toHaveProperty('refresh_token');
    const { payload } = await verifyWithJose(tessera, tokens.access_token);
    expectClientToken(payload, { issuer: tessera.issuer, clientId: client.id, scope: 'orders:write' });

    // Without a scope: the client's default.
    const defaults = await openid.clientCredentialsGrant(config);
    expect(defaults.scope).toBe('profile');
  });

  it('introspects, reads userinfo and revokes with the tokens it got', async () => {
    const config = await discover('basic');
    const login = await openid.genericGrantRequest(config, 'password', { username: user.username, password: user.password });

    expect(await openid.tokenIntrospection(config, login.access_token)).toMatchObject({
      active: true,
      token_type: 'Bearer',
      client_id: client.id,
      sub: user.id,
      scope: login.scope,
      iss: tessera.issuer,
    });
    expect(await openid.tokenIntrospection(config, login.refresh_token!)).toMatchObject({
      active: true,
      client_id: client.id,
      sub: user.id,
    });
    expect(await openid.fetchUserInfo(config, login.access_token, user.id)).toMatchObject({
      sub: user.id,
      preferred_username: user.username,
    });

    await openid.tokenRevocation(config, login.refresh_token!);
    expect(await openid.tokenIntrospection(config, login.refresh_token!)).toEqual({ active: false });
    expect(await openid.tokenIntrospection(config, login.access_token)).toEqual({ active: false });
  });

  /**
   * The browser's part, by hand: GET the authorization URL (the sign-in page), post the form with
   * the cookies it set, and return where Tessera sends the browser back to.
   */
  async function signInAt(authorizationUrl: URL): Promise<{ callback: URL; cookies: string }> {
    const page = await fetch(authorizationUrl, { redirect: 'manual' });
    expect(page.status).toBe(200);
    const cookies = page.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
    const html = await page.text();
    const fields = Object.fromEntries(
      [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((match) => [
        match[1]!,
        match[2]!.replace(/&#(\d+);/g, (_all, code: string) => String.fromCharCode(Number(code))),
      ]),
    );
    const posted = await fetch(`${tessera.issuer}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookies },
      body: new URLSearchParams({ ...fields, username: user.username, password: user.password }),
    });
    expect(posted.status).toBe(303);
    const session = posted.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
    return { callback: new URL(posted.headers.get('location')!), cookies: `${cookies}; ${session}` };
  }

  it.each(['confidential', 'public'] as const)(
    'runs the authorization code flow with PKCE and OpenID Connect as a %s client, then RP-initiated logout',
    async (type) => {
      const redirectUri = 'http://127.0.0.1/callback';
      const signedOut = 'http://127.0.0.1/signed-out';
      const browserClient = await createTestClient(tessera.service, {
        type,
        grantTypes: ['authorization_code', 'refresh_token'],
        scopes: ['openid', 'profile'],
        defaultScopes: ['openid'],
        redirectUris: [redirectUri],
        postLogoutRedirectUris: [signedOut],
      });
      const authentication = browserClient.secret === undefined ? openid.None() : openid.ClientSecretBasic(browserClient.secret);
      const config = await openid.discovery(new URL(tessera.issuer), browserClient.id, undefined, authentication, { execute: [openid.allowInsecureRequests] });
      const verifier = openid.randomPKCECodeVerifier();
      const state = openid.randomState();
      const nonce = openid.randomNonce();
      const authorizationUrl = openid.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: 'openid profile',
        code_challenge: await openid.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      expect(authorizationUrl.origin + authorizationUrl.pathname).toBe(`${tessera.issuer}/authorize`);
      const { callback, cookies } = await signInAt(authorizationUrl);

      // The library checks state, iss (RFC 9207: the metadata says it is always there), the ID
      // token's signature, iss, aud, exp, iat and nonce, and at_hash where it applies.
      const tokens = await openid.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
      expect(tokens.claims()).toMatchObject({ iss: tessera.issuer, sub: user.id, aud: browserClient.id, nonce, sid: expect.any(String), auth_time: expect.any(Number) });
      expect(tokens.refresh_token).toEqual(expect.any(String));
      expect(await openid.fetchUserInfo(config, tokens.access_token, user.id)).toMatchObject({ sub: user.id });
      const refreshed = await openid.refreshTokenGrant(config, tokens.refresh_token!);
      expect(refreshed.access_token).toEqual(expect.any(String));
      // OIDC Core §12.2: a new ID token, which the library validates as at the code exchange (its
      // iss, aud, exp and iat); it keeps the sign-in's sub, auth_time and sid, and has no nonce.
      const signedIn = tokens.claims()!;
      expect(refreshed.claims()).toMatchObject({ iss: tessera.issuer, sub: user.id, aud: browserClient.id, auth_time: signedIn.auth_time, sid: signedIn['sid'] });
      expect(refreshed.claims()).not.toHaveProperty('nonce');

      const logoutUrl = openid.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: signedOut, state: 'bye' });
      const logout = await fetch(logoutUrl, { redirect: 'manual', headers: { Cookie: cookies } });
      expect(logout.status).toBe(302);
      expect(logout.headers.get('location')).toBe(`${signedOut}?state=bye`);
      const ended = await openid.refreshTokenGrant(config, refreshed.refresh_token!).catch((error: unknown) => error);
      expect(ended).toMatchObject({ status: 400, error: 'invalid_grant' });
    },
  );

  it('reads Tessera errors as RFC 6749 §5.2 error responses', async () => {
    const config = await discover('basic');

    const wrongPassword = await openid
      .genericGrantRequest(config, 'password', { username: user.username, password: `${user.password}x` })
      .catch((error: unknown) => error);
    expect(wrongPassword).toBeInstanceOf(openid.ResponseBodyError);
    expect(wrongPassword).toMatchObject({
      status: 400,
      error: 'invalid_grant',
      error_description: 'the username or password is incorrect',
    });

    const unknownRefresh = await openid.refreshTokenGrant(config, 'A'.repeat(43)).catch((error: unknown) => error);
    expect(unknownRefresh).toBeInstanceOf(openid.ResponseBodyError);
    expect(unknownRefresh).toMatchObject({ status: 400, error: 'invalid_grant' });

    // invalid_client is 401 with a Basic challenge (RFC 6749 §5.2): the library reports the challenge.
    const wrongSecret = await openid.discovery(new URL(tessera.issuer), client.id, undefined, openid.ClientSecretBasic('not-the-secret'), {
      execute: [openid.allowInsecureRequests],
    });
    const refused = await openid.clientCredentialsGrant(wrongSecret).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(openid.WWWAuthenticateChallengeError);
    expect(refused).toMatchObject({ status: 401, cause: [{ scheme: 'basic', parameters: { realm: 'tessera' } }] });
  });
});

describe('oauth4webapi (panva): strict discovery and response validation', () => {
  let tessera: LoopbackTessera;
  let client: TestClient;
  let user: { id: string; username: string; password: string };
  let as: oauth.AuthorizationServer;
  let issuerUrl: URL;
  const insecure = { [oauth.allowInsecureRequests]: true } as const;

  beforeAll(async () => {
    tessera = await startLoopbackTessera({ clock: createFakeClock(Date.now()) });
    client = await createTestClient(tessera.service, { grantTypes: [...GRANTS], scopes: SCOPES, defaultScopes: ['profile'] });
    user = await createTestUser(tessera.service, { scopes: ['profile', 'orders:read'] });
    issuerUrl = new URL(tessera.issuer);
    // What the other tests start from, as an application would: the RFC 8414 document.
    as = await oauth.processDiscoveryResponse(issuerUrl, await oauth.discoveryRequest(issuerUrl, { algorithm: 'oauth2', ...insecure }));
  });
  afterAll(async () => {
    await tessera?.close();
  });

  it('accepts the discovery documents (RFC 8414 and OpenID Connect Discovery locations)', async () => {
    for (const algorithm of ['oauth2', 'oidc'] as const) {
      const response = await oauth.discoveryRequest(issuerUrl, { algorithm, ...insecure });
      const discovered = await oauth.processDiscoveryResponse(issuerUrl, response);
      expect(discovered).toMatchObject({
        issuer: tessera.issuer,
        token_endpoint: `${tessera.issuer}/token`,
        jwks_uri: `${tessera.issuer}${JWKS_PATH}`,
      });
      expect(discovered.grant_types_supported).toEqual(expect.arrayContaining([...GRANTS]));
    }
  });

  /** RFC 9068 §4, as a resource server that uses oauth4webapi would check a bearer token. */
  function validateAccessToken(token: string) {
    const request = new Request('http://127.0.0.1/orders', { headers: { authorization: `Bearer ${token}` } });
    return oauth.validateJwtAccessToken(as, request, tessera.issuer, insecure);
  }

  it('accepts the password grant response (client_secret_basic), and its access token as RFC 9068', async () => {
    const oauthClient: oauth.Client = { client_id: client.id };
    const response = await oauth.genericTokenEndpointRequest(
      as,
      oauthClient,
      oauth.ClientSecretBasic(client.secret!),
      'password',
      new URLSearchParams({ username: user.username, password: user.password, scope: 'orders:read' }),
      insecure,
    );
    const tokens = await oauth.processGenericTokenEndpointResponse(as, oauthClient, response);
    expect(tokens).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL, scope: 'orders:read' });
    expect(tokens.refresh_token).toEqual(expect.any(String));
    const claims = await validateAccessToken(tokens.access_token);
    expectUserToken(claims, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'orders:read' });

    // The refresh grant (client_secret_post this time).
    const refreshResponse = await oauth.refreshTokenGrantRequest(
      as,
      oauthClient,
      oauth.ClientSecretPost(client.secret!),
      tokens.refresh_token!,
      insecure,
    );
    const refreshed = await oauth.processRefreshTokenResponse(as, oauthClient, refreshResponse);
    expect(refreshed).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL, scope: 'orders:read' });
    expect(refreshed.refresh_token).toEqual(expect.any(String));
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    const refreshedClaims = await validateAccessToken(refreshed.access_token);
    expectUserToken(refreshedClaims, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'orders:read' });
    expect(refreshedClaims['sid']).toBe(claims['sid']);

    // RFC 7662 and RFC 7009 responses pass its checks too.
    const introspected = await oauth.processIntrospectionResponse(
      as,
      oauthClient,
      await oauth.introspectionRequest(as, oauthClient, oauth.ClientSecretBasic(client.secret!), refreshed.access_token, insecure),
    );
    expect(introspected).toMatchObject({ active: true, client_id: client.id, sub: user.id, scope: 'orders:read' });
    await oauth.processRevocationResponse(
      await oauth.revocationRequest(as, oauthClient, oauth.ClientSecretBasic(client.secret!), refreshed.refresh_token!, insecure),
    );
    const revoked = await oauth.processIntrospectionResponse(
      as,
      oauthClient,
      await oauth.introspectionRequest(as, oauthClient, oauth.ClientSecretBasic(client.secret!), refreshed.refresh_token!, insecure),
    );
    expect(revoked).toEqual({ active: false });
  });

  it('accepts the client credentials response, and its access token as RFC 9068', async () => {
    const oauthClient: oauth.Client = { client_id: client.id };
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      oauthClient,
      oauth.ClientSecretBasic(client.secret!),
      new URLSearchParams({ scope: 'orders:read orders:write' }),
      insecure,
    );
    const tokens = await oauth.processClientCredentialsResponse(as, oauthClient, response);
    expect(tokens).toMatchObject({ token_type: 'bearer', expires_in: DEFAULT_ACCESS_TOKEN_TTL });
    expect(scopeSet(tokens.scope)).toEqual(['orders:read', 'orders:write']);
    expect(tokens).not.toHaveProperty('refresh_token');
    const claims = await validateAccessToken(tokens.access_token);
    expectClientToken(claims, { issuer: tessera.issuer, clientId: client.id, scope: 'orders:read orders:write' });
  });

  it('reads an error response as an RFC 6749 §5.2 error', async () => {
    const oauthClient: oauth.Client = { client_id: client.id };
    const response = await oauth.refreshTokenGrantRequest(as, oauthClient, oauth.ClientSecretBasic(client.secret!), 'A'.repeat(43), insecure);
    const error = await oauth.processRefreshTokenResponse(as, oauthClient, response).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(oauth.ResponseBodyError);
    expect(error).toMatchObject({
      status: 400,
      error: 'invalid_grant',
      error_description: 'the refresh token is invalid, expired or revoked',
    });
  });
});

describe('jose createRemoteJWKSet across a full key rotation', () => {
  /**
   * Why simulated time rather than the wall clock: what a verifier caches is bounded by its own
   * timings, not by Tessera's Cache-Control. jose keeps a JWKS for 10 minutes whatever max-age says,
   * and refetches for an unknown `kid` at most once per 30 s (cooldownDuration). With JWKS_MAX_AGE
   * and KEY_RELOAD_INTERVAL of 1 s, a jose verifier with default options that fetched the JWKS just
   * before a rotation rejects every token of the new key for the rest of those 30 s: short
   * wall-clock timings would show a failure of that configuration, not prove the rotation safe.
   * And ACCESS_TOKEN_TTL is at least 30 s, so removal alone is 36 s away. So every party here
   * shares one simulated clock: `Date` is faked for the whole process (jose's cache, its cooldown
   * and its `exp` checks read it), Tessera's clock reads `Date.now()` as production's systemClock
   * does, and startKeyMaintenance runs on a faked setInterval. HTTP, PostgreSQL, the key lifecycle
   * and the verifier are all real, and the service runs on its DEFAULT timings: what operators deploy.
   */
  const STEP_MS = 10_000;
  let tessera: LoopbackTessera;
  let client: TestClient;
  const simulatedClock: FakeClock = {
    now: () => Date.now(),
    advance: (ms) => vi.advanceTimersByTime(ms),
    set: (ms) => vi.setSystemTime(ms),
  };

  beforeAll(async () => {
    tessera = await startLoopbackTessera({ clock: simulatedClock });
    client = await createTestClient(tessera.service, { grantTypes: ['client_credentials'], scopes: ['orders:read'] });
  });
  afterAll(async () => {
    vi.useRealTimers();
    await tessera?.close();
  });

  async function issueToken(): Promise<string> {
    const response = await fetch(`${tessera.issuer}/token`, {
      method: 'POST',
      headers: { authorization: client.basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { access_token: string }).access_token;
  }

  async function publishedKids(): Promise<string[]> {
    const response = await fetch(tessera.jwksUrl);
    expect(response.status).toBe(200);
    return ((await response.json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
  }

  it('verifies every token, with zero failures, from before the rotation until the old key is gone', { timeout: 60_000 }, async () => {
    const { deps, config } = tessera.service;
    const keyReloadMs = config.keyReloadInterval * 1000;
    const promotionMs = promotionDelaySeconds(config) * 1000;
    const retentionMs = retentionSeconds(config) * 1000;
    // Tessera's defaults (JWKS_MAX_AGE 5m, KEY_RELOAD_INTERVAL 30s, ACCESS_TOKEN_TTL 15m).
    expect([config.jwksMaxAge, config.keyReloadInterval, config.accessTokenTtl]).toEqual([300, 30, DEFAULT_ACCESS_TOKEN_TTL]);

    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'], now: Date.now() });
    // The production maintenance loop, on the simulated timer; it reloads the key set the app uses.
    let reloads = 0;
    const keys: KeyStore = {
      current: () => deps.keys.current(),
      isFresh: () => deps.keys.isFresh(),
      reload: async () => {
        await deps.keys.reload();
        reloads += 1;
      },
    };
    const maintenance = startKeyMaintenance({ ...deps, keys });
    const started = Date.now();
    // The key lifecycle runs on the database's clock: the keys age as the simulated time passes.
    const keysAgeTo = await keysFollow(deps.db, started);
    /** Waits (in real time) for the maintenance passes that simulated time has made due. */
    const maintenanceCaughtUp = async () => {
      const due = Math.floor((Date.now() - started) / keyReloadMs);
      const deadline = performance.now() + 10_000;
      while (reloads < due) {
        if (performance.now() > deadline) {
          const warnings = tessera.service.logs.entries().filter((entry) => entry['level'] === 40);
          throw new Error(`key maintenance did not run: ${JSON.stringify(warnings)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };

    // ONE verifier for the whole run, with jose's default caching, as a downstream service has.
    const jwks = createRemoteJWKSet(tessera.jwksUrl);
    const oldKid = deps.keys.current().signing.kid;
    let newKid: string | undefined;
    let rotatedAt = 0;
    let newPublishedAt: number | undefined;
    let newFirstSignedAt: number | undefined;
    let removedAt: number | undefined;
    const live: { token: string; kid: string; exp: number }[] = [];
    const signedBy = new Map<string, number>();
    const failures: string[] = [];
    const states = new Map<string, string[]>();
    let verified = 0;

    try {
      for (let step = 0; removedAt === undefined; step++) {
        if (step > 0) {
          await keysAgeTo(Date.now() + STEP_MS);
          vi.advanceTimersByTime(STEP_MS);
          await maintenanceCaughtUp();
        }
        const at = Date.now() - started;
        if (at > 2 * (promotionMs + retentionMs + 2 * keyReloadMs)) throw new Error('the rotation did not complete in time');
        if (step === 1) {
          // Rotate right after the verifier fetched the JWKS: its cache lacks the new key.
          newKid = (await rotateSigningKey({ db: deps.db, ring: deps.keyRing, log: deps.log, config, serving: true }, 'interop-test')).kid;
          rotatedAt = at;
        }

        const token = await issueToken();
        const kid = decodeProtectedHeader(token).kid!;
        signedBy.set(kid, (signedBy.get(kid) ?? 0) + 1);
        if (kid === newKid) newFirstSignedAt ??= at;
        live.push({ token, kid, exp: decodeJwt(token).exp! * 1000 });

        // A downstream service meets every unexpired token, old ones included, at any time.
        for (const entry of live) {
          try {
            const { payload } = await verifyWithJose(tessera, entry.token, jwks);
            expect(payload.sub).toBe(client.id);
            verified += 1;
          } catch (error) {
            failures.push(`t=${at / 1000}s kid=${entry.kid}: ${(error as Error).name}: ${(error as Error).message}`);
          }
        }

        for (const status of await listKeyStatus(deps.db, { config, serving: true })) {
          const seen = states.get(status.kid) ?? [];
          if (seen.at(-1) !== status.state) states.set(status.kid, [...seen, status.state]);
        }
        const published = await publishedKids();
        if (newKid !== undefined && published.includes(newKid)) newPublishedAt ??= at;
        if (newKid !== undefined && !published.includes(oldKid)) {
          removedAt = at;
          states.set(oldKid, [...(states.get(oldKid) ?? []), 'removed']);
          // DESIGN.md: a retired key leaves the JWKS only once every token it signed has expired.
          expect(live.filter((entry) => entry.kid === oldKid && entry.exp > Date.now())).toEqual([]);
        }
        live.splice(0, live.length, ...live.filter((entry) => entry.exp > Date.now() + STEP_MS));
      }
    } finally {
      maintenance.stop();
      vi.useRealTimers();
    }

    expect(failures).toEqual([]);
    expect(verified).toBeGreaterThan(1000);
    expect(newKid).toBeDefined();
    expect([...signedBy.keys()].sort()).toEqual([oldKid, newKid].sort());
    expect(states.get(newKid!)).toEqual(['next', 'active']);
    expect(states.get(oldKid)).toEqual(['active', 'retired', 'removed']);
    // The new key was published within one reload interval, and for a full JWKS lifetime before it signed.
    expect(newPublishedAt! - rotatedAt).toBeLessThanOrEqual(keyReloadMs);
    expect(newFirstSignedAt! - newPublishedAt!).toBeGreaterThanOrEqual(config.jwksMaxAge * 1000);
    expect(newFirstSignedAt! - rotatedAt).toBeGreaterThanOrEqual(promotionMs);
    // The old key stayed published for its whole retention after the new one took over.
    expect(removedAt! - newFirstSignedAt!).toBeGreaterThanOrEqual(retentionMs - keyReloadMs);
    // The hard case did happen: when the verifier first met the new kid, its cached JWKS was one
    // fetched before that key was published, and it recovered by refetching at that moment.
    const joseFetches = tessera.requests
      .filter((request) => request.path === JWKS_PATH && request.userAgent.startsWith('jose/'))
      .map((request) => request.at - started);
    const fetchedBefore = joseFetches.filter((at) => at < newFirstSignedAt!);
    expect(fetchedBefore.at(-1)).toBeLessThan(newPublishedAt!);
    expect(joseFetches).toContain(newFirstSignedAt);
  });
});

/** PyJWT from Debian (python3-jwt, with python3-cryptography for RS256). */
const PYTHON = '/usr/bin/python3';
const pyjwt = (() => {
  const probe = spawnSync(PYTHON, ['-c', 'import jwt, cryptography; print(jwt.__version__)'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error) return { available: false, reason: `${PYTHON} could not be run (${probe.error.message})` } as const;
  if (probe.status !== 0) {
    return { available: false, reason: `${PYTHON} has no PyJWT with cryptography (apt-get install python3-jwt): ${probe.stderr.trim()}` } as const;
  }
  return { available: true, version: probe.stdout.trim() } as const;
})();
if (!pyjwt.available) console.warn(`SKIPPED: PyJWT interoperability: ${pyjwt.reason}`);

/**
 * One PyJWKClient for the whole run, as a Python service keeps one: it reads a token per line on
 * stdin and answers one JSON line, the verified claims or the error. `verify` is the README's
 * ("Verifying tokens from other stacks"), word for word: keep them together.
 */
const PYJWT_VERIFIER = `
import json, sys, jwt
jwks_url, audience, issuer = sys.argv[1:4]

jwks = jwt.PyJWKClient(jwks_url, lifespan=600)

def verify(token):
    # PyJWT does not look at typ; RFC 9068 section 4 asks for it (no other JWT of Tessera's keys passes).
    if jwt.get_unverified_header(token).get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("not an access token")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer, leeway=5,
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
    return key, claims

for line in sys.stdin:
    try:
        key, claims = verify(line.strip())
        print(json.dumps({"ok": True, "kid": key.key_id, "claims": claims}), flush=True)
    except Exception as error:
        print(json.dumps({"ok": False, "error": type(error).__name__ + ": " + str(error)}), flush=True)
`;

describe.skipIf(!pyjwt.available)(
  `PyJWT PyJWKClient via ${PYTHON} (${pyjwt.available ? `PyJWT ${pyjwt.version}` : `skipped: ${pyjwt.reason}`})`,
  () => {
    let tessera: LoopbackTessera;
    let client: TestClient;
    let user: { id: string; username: string; password: string };

    beforeAll(async () => {
      // PyJWT checks iat and exp against the real clock.
      tessera = await startLoopbackTessera({ clock: createFakeClock(Date.now()) });
      client = await createTestClient(tessera.service, { grantTypes: [...GRANTS], scopes: SCOPES });
      user = await createTestUser(tessera.service, { scopes: ['profile', 'orders:read'] });
    });
    afterAll(async () => {
      await tessera?.close();
    });

    async function passwordToken(): Promise<string> {
      const response = await fetch(`${tessera.issuer}/token`, {
        method: 'POST',
        headers: { authorization: client.basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'password', username: user.username, password: user.password, scope: 'orders:read' }),
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { access_token: string }).access_token;
    }

    it('is the README\'s', () => {
      const verify = PYJWT_VERIFIER.slice(PYJWT_VERIFIER.indexOf('def verify'), PYJWT_VERIFIER.indexOf('\nfor line'));
      expect(verify).toContain('jwt.decode(');
      expect(readFileSync(join(findPackageRoot(), 'README.md'), 'utf8')).toContain(verify);
    });

    it('verifies Tessera tokens with PyJWKClient as the README sets it up (typ checked), before and after a key rotation', async () => {
      const python = spawn(PYTHON, ['-c', PYJWT_VERIFIER, tessera.jwksUrl.href, tessera.issuer, tessera.issuer], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stderr = '';
      python.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      python.on('error', (error) => (stderr += error.message));
      const exited = once(python, 'exit');
      const lines = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
      const verify = async (token: string) => {
        python.stdin.write(`${token}\n`);
        const { value, done } = await lines.next();
        if (done) throw new Error(`the PyJWT verifier exited: ${stderr}`);
        return JSON.parse(value as string) as { ok: boolean; kid?: string; claims?: JWTPayload; error?: string };
      };
      try {
        const { deps } = tessera.service;
        const oldKid = deps.keys.current().signing.kid;
        const oldToken = await passwordToken();
        const before = await verify(oldToken);
        expect(before).toMatchObject({ ok: true, kid: oldKid });
        expectUserToken(before.claims!, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'orders:read' });
        // The typ check: the same claims under Tessera's own signature, but typ JWT, are refused;
        // the same forgery with typ at+jwt is the control.
        const genuine = deps.keys.current().signing;
        expect(await verify(await forgeJwt(genuine, decodeJwt(oldToken), { header: { typ: 'JWT' } }))).toEqual({ ok: false, error: 'InvalidTokenError: not an access token' });
        expect(await verify(await forgeJwt(genuine, decodeJwt(oldToken)))).toMatchObject({ ok: true, kid: oldKid });

        // A rotation whose promotion delay has passed (for the keys only, on the database's clock;
        // the tokens keep real-time iat/exp, which PyJWT checks against its own clock).
        const { kid: newKid } = await rotateSigningKey({ db: deps.db, ring: deps.keyRing, log: deps.log, config: deps.config, serving: true }, 'interop-test');
        await makeNextKeyDue(deps.db);
        expect(await maintainSigningKeys({ ...deps, ring: deps.keyRing })).toBe(true);
        await deps.keys.reload();
        expect(deps.keys.current().signing.kid).toBe(newKid);

        // The same client, whose cached JWKS lacks the new key, refetches it for the unknown kid.
        const after = await verify(await passwordToken());
        expect(after).toMatchObject({ ok: true, kid: newKid });
        expectUserToken(after.claims!, { issuer: tessera.issuer, sub: user.id, clientId: client.id, scope: 'orders:read' });
        // The token signed by the retired key still verifies.
        expect(await verify(oldToken)).toMatchObject({ ok: true, kid: oldKid });
      } finally {
        // End of input ends the verifier's loop; stop it only if it does not exit by itself.
        python.stdin.end();
        const timer = setTimeout(() => python.kill(), 5_000);
        await exited;
        clearTimeout(timer);
      }
    });
  },
);
