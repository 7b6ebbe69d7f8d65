import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, jwtVerify } from 'jose';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeClock } from './helpers/clock.js';
import { type LoopbackTessera, startLoopbackTessera } from './helpers/loopback-tessera.js';
import { noteSecret } from './helpers/secrets.js';
import { createTestClient, createTestUser, type TestClient } from './helpers/service.js';

/**
 * The whole browser sign-in in a real browser: Debian's Chromium (`apt-get install chromium`,
 * .ci/run) driven by playwright-core, headless, against a Tessera on a loopback port and a tiny
 * client app on another. The app starts the flow (PKCE S256, state, nonce), receives the code at
 * its redirect URI, exchanges it at /token as a confidential or a public client, verifies the ID
 * token, and signs out through /logout.
 */
const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);

const clock = createFakeClock();
let tessera: LoopbackTessera;
let browser: Browser;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  tessera = await startLoopbackTessera({ clock });
  user = await createTestUser(tessera.service, { scopes: ['profile'] });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

afterAll(async () => {
  await browser?.close();
  await tessera?.close();
});

interface ClientApp {
  readonly origin: string;
  /** What the app's /callback saw and got, per completed sign-in. */
  readonly signIns: { sub: string; nonce: string | undefined; sid: string; refreshToken: string | undefined; idToken: string }[];
  close(): Promise<void>;
}

/**
 * The relying party: /login starts the flow, /callback checks state and iss, exchanges the code
 * and verifies the ID token (signature from Tessera's JWKS, iss, aud, nonce), /logout sends the
 * browser to Tessera's end_session_endpoint and /signed-out checks the state it comes back with.
 */
async function startClientApp(register: (origin: string) => Promise<TestClient>): Promise<ClientApp & { client: TestClient }> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = await register(origin);
  const pending = new Map<string, { verifier: string; nonce: string }>();
  const signIns: ClientApp['signIns'] = [];
  let logoutState: string | undefined;
  const page = (res: ServerResponse, status: number, text: string) => {
    res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>app</title><p id="result">${text}</p>`);
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', origin);
      if (url.pathname === '/login') {
        const verifier = randomBytes(32).toString('base64url');
        const state = randomBytes(16).toString('base64url');
        const nonce = randomBytes(16).toString('base64url');
        pending.set(state, { verifier, nonce });
        const authorize = new URL('/authorize', tessera.issuer);
        authorize.search = new URLSearchParams({
          response_type: 'code',
          client_id: client.id,
          redirect_uri: `${origin}/callback`,
          scope: 'openid profile',
          state,
          nonce,
          code_challenge: createHash('sha256').update(verifier).digest('base64url'),
          code_challenge_method: 'S256',
        }).toString();
        res.writeHead(302, { Location: authorize.href }).end();
        return;
      }
      if (url.pathname === '/callback') {
        const flow = pending.get(url.searchParams.get('state') ?? '');
        if (flow === undefined) return page(res, 400, 'unknown state');
        pending.delete(url.searchParams.get('state')!);
        if (url.searchParams.get('iss') !== tessera.issuer) return page(res, 400, 'wrong iss (mix-up)');
        const code = url.searchParams.get('code');
        if (code === null) return page(res, 400, `error ${url.searchParams.get('error')}`);
        noteSecret('authorization code (browser test)', code);
        const form = new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: flow.verifier, redirect_uri: `${origin}/callback` });
        const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
        if (client.secret === undefined) form.set('client_id', client.id);
        else headers['Authorization'] = client.basic;
        const exchanged = await fetch(`${tessera.issuer}/token`, { method: 'POST', headers, body: form });
        const tokens = (await exchanged.json()) as Record<string, string>;
        if (exchanged.status !== 200) return page(res, 502, `token endpoint ${exchanged.status} ${JSON.stringify(tokens)}`);
        for (const name of ['access_token', 'refresh_token', 'id_token']) noteSecret(`${name} (browser test)`, tokens[name]);
        const jwks = createLocalJWKSet((await (await fetch(`${tessera.issuer}/.well-known/jwks.json`)).json()) as JSONWebKeySet);
        const { payload } = await jwtVerify(tokens['id_token']!, jwks, {
          issuer: tessera.issuer,
          audience: client.id,
          algorithms: ['RS256'],
          currentDate: new Date(clock.now()),
        });
        if (payload['nonce'] !== flow.nonce) return page(res, 400, 'wrong nonce');
        signIns.push({ sub: payload.sub!, nonce: payload['nonce'] as string, sid: payload['sid'] as string, refreshToken: tokens['refresh_token'], idToken: tokens['id_token']! });
        return page(res, 200, `signed in as ${payload.sub}`);
      }
      if (url.pathname === '/logout') {
        logoutState = randomBytes(8).toString('hex');
        const logout = new URL('/logout', tessera.issuer);
        logout.search = new URLSearchParams({
          id_token_hint: signIns.at(-1)!.idToken,
          post_logout_redirect_uri: `${origin}/signed-out`,
          state: logoutState,
        }).toString();
        res.writeHead(302, { Location: logout.href }).end();
        return;
      }
      if (url.pathname === '/signed-out') return page(res, url.searchParams.get('state') === logoutState ? 200 : 400, 'signed out');
      page(res, 404, 'not found');
    })().catch((error: unknown) => page(res, 500, String(error)));
  });
  return {
    origin,
    client,
    signIns,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const browserClient = (type: 'confidential' | 'public') => (origin: string) =>
  createTestClient(tessera.service, {
    type,
    name: `The ${type} app`,
    grantTypes: ['authorization_code', 'refresh_token'],
    scopes: ['openid', 'profile'],
    defaultScopes: ['openid'],
    redirectUris: [`${origin}/callback`],
    postLogoutRedirectUris: [`${origin}/signed-out`],
  });

describe.each(['confidential', 'public'] as const)('a %s client in Chromium', (type) => {
  it('signs in on the hosted page, skips it the second time, and signs out', { timeout: 60_000 }, async () => {
    const app = await startClientApp(browserClient(type));
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const statuses: { url: string; status: number }[] = [];
      page.on('response', (response) => statuses.push({ url: response.url(), status: response.status() }));

      // First visit: the app sends the browser to /authorize, which shows the sign-in page.
      await page.goto(`${app.origin}/login`);
      expect(new URL(page.url()).pathname).toBe('/authorize');
      expect(await page.title()).toBe('Sign in');
      expect(await page.textContent('main')).toContain(`to continue to The ${type} app`);
      // The username input has the focus first (autofocus), and its label names it.
      expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('username');
      await page.getByLabel('Username').fill(user.username);
      await page.getByLabel('Password').fill('not the password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForLoadState();
      expect(await page.getByRole('alert').textContent()).toBe('The username or password is incorrect.');
      expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('password');

      await page.getByLabel('Password').fill(user.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${app.origin}/callback?**`);
      expect(await page.textContent('#result')).toBe(`signed in as ${user.id}`);
      expect(app.signIns).toHaveLength(1);
      if (type === 'public') expect(app.signIns[0]!.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const cookies = await context.cookies(tessera.issuer);
      expect(cookies.find((cookie) => cookie.name === 'tessera_session')).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });

      // Second visit: the session cookie skips the page; /authorize answers 302 straight away.
      statuses.length = 0;
      await page.goto(`${app.origin}/login`);
      await page.waitForURL(`${app.origin}/callback?**`);
      expect(await page.textContent('#result')).toBe(`signed in as ${user.id}`);
      expect(statuses.filter((entry) => new URL(entry.url).pathname === '/authorize').map((entry) => entry.status)).toEqual([302]);
      expect(app.signIns).toHaveLength(2);
      expect(app.signIns[1]!.sid).toBe(app.signIns[0]!.sid);

      // Logout: back at the app's registered page with its state, and the next visit asks again.
      await page.goto(`${app.origin}/logout`);
      await page.waitForURL(`${app.origin}/signed-out?**`);
      expect(await page.textContent('#result')).toBe('signed out');
      await page.goto(`${app.origin}/login`);
      expect(new URL(page.url()).pathname).toBe('/authorize');
      expect(await page.title()).toBe('Sign in');
      // The refresh tokens of the ended session no longer work.
      const refresh = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: app.signIns[1]!.refreshToken! });
      const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
      if (app.client.secret === undefined) refresh.set('client_id', app.client.id);
      else headers['Authorization'] = app.client.basic;
      const refreshed = await fetch(`${tessera.issuer}/token`, { method: 'POST', headers, body: refresh });
      expect(refreshed.status).toBe(400);
      expect(await refreshed.json()).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
      expect(decodeJwt(app.signIns[0]!.idToken).sub).toBe(user.id);
    } finally {
      await context.close();
      await app.close();
    }
  });
});
