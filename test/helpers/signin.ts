import { createHash, randomBytes } from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import { expect } from 'vitest';
import { noteSecret } from './secrets.js';
import { createTestClient, type TestClient, type TestService } from './service.js';

/** Where the browser clients of these tests say they live; never contacted (supertest reads the Location). */
export const REDIRECT_URI = 'https://app.example.test/callback';
export const POST_LOGOUT_URI = 'https://app.example.test/signed-out';

/** RFC 7636 §4.1, §4.2: a verifier and its S256 challenge. */
export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** A client of the authorization code grant (confidential unless `type` says otherwise). */
export async function createBrowserClient(
  service: TestService,
  options: Parameters<typeof createTestClient>[1] = {},
): Promise<TestClient> {
  return createTestClient(service, {
    grantTypes: ['authorization_code', 'refresh_token'],
    scopes: ['openid', 'profile', 'orders:read'],
    defaultScopes: ['openid'],
    redirectUris: [REDIRECT_URI],
    postLogoutRedirectUris: [POST_LOGOUT_URI],
    ...options,
  });
}

export function authorizeParams(client: { readonly id: string }, challenge: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    response_type: 'code',
    client_id: client.id,
    redirect_uri: REDIRECT_URI,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: `st-${randomBytes(6).toString('hex')}`,
    scope: 'openid',
    ...extra,
  };
}

/** The hidden fields and the CSRF token of a sign-in page. */
export function formFields(html: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[match[1]!] = match[2]!.replace(/&#(\d+);/g, (_all, code: string) => String.fromCharCode(Number(code)));
  }
  return fields;
}

/** The query of a redirect's Location. */
export function locationParams(res: request.Response): URLSearchParams {
  return new URL(res.headers['location'] as string).searchParams;
}

/**
 * Signs `user` in through the hosted page in `agent` (a supertest agent keeps the cookies, as a
 * browser does) and returns the code from the redirect back to the client.
 */
export async function signInForCode(
  agent: request.Agent,
  params: Record<string, string>,
  user: { readonly username: string; readonly password: string },
): Promise<{ code: string; redirect: URLSearchParams }> {
  const page = await agent.get('/authorize').query(params);
  expect(page.status, page.text).toBe(200);
  const posted = await agent.post('/authorize').type('form').send({ ...formFields(page.text), username: user.username, password: user.password });
  expect(posted.status, posted.text).toBe(303);
  const redirect = locationParams(posted);
  const code = redirect.get('code')!;
  noteSecret('authorization code', code);
  return { code, redirect };
}

/** POST /token with grant_type=authorization_code: Basic for a confidential client, client_id alone for a public one. */
/**
 * The body of a token response that carries an ID token, as an expected value (toEqual): `scope`
 * as granted, and `refreshToken` a matcher for the refresh token (by default, 43 base64url characters).
 */
export function tokenResponseWithIdToken(scope: string, refreshToken: unknown = expect.stringMatching(/^[A-Za-z0-9_-]{43}$/)): Record<string, unknown> {
  return {
    access_token: expect.any(String),
    token_type: 'Bearer',
    expires_in: 900,
    scope,
    refresh_token: refreshToken,
    id_token: expect.any(String),
  };
}

export function exchangeCode(app: Express, client: TestClient, code: string, verifier: string, extra: Record<string, string> = {}): request.Test {
  const req = request(app).post('/token').type('form');
  const form: Record<string, string> = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT_URI, ...extra };
  if (client.secret === undefined) form['client_id'] = client.id;
  else req.set('Authorization', client.basic);
  return req.send(form);
}
