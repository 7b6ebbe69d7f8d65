import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createVerifier,
  InsufficientScopeError,
  InvalidTokenError,
  IssuerUnavailableError,
  type VerificationError,
  type Verifier,
  type VerifierOptions,
} from '@tessera-auth/verify';
import express from 'express';
import { exportJWK } from 'jose';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { forgeJwt } from './helpers/forge.js';

/*
 * @tessera-auth/verify against an issuer that misbehaves: a fake issuer of our own on loopback
 * (node:http, not Tessera), which answers discovery and its JWKS as each test tells it (properly,
 * with a 500, with a body that does not parse, or not at all) and counts every request. Each bad
 * answer must end in the verifier's typed error, never a crash and never a storm of fetches.
 * The verifier runs on the real clock; tests move only Date to pass its floors (30 s between
 * refetches for an unknown kid, 5 s after a failure).
 */

const AUDIENCE = 'orders-api';
const DISCOVERY_PATH = '/.well-known/oauth-authorization-server';
const JWKS_PATH = '/jwks';
const REQUIRED = 'a bearer access token is required';
const NOT_VALID = 'the access token is not valid';

type Answer = 'ok' | '500' | 'not-json' | 'not-a-key-set' | 'silent' | 'huge' | 'huge-chunked';

interface FakeIssuer {
  /** The issuer identifier: the origin, or the origin and `path` (startFakeIssuer). */
  readonly url: string;
  /** Every path asked for, in order. */
  readonly asked: string[];
  readonly hits: { discovery: number; jwks: number };
  discovery: Answer;
  jwks: Answer;
  /** Its signing keys, all published. */
  readonly keys: { kid: string; privateKey: KeyObject; publicKey: KeyObject }[];
  addKey(): { kid: string; privateKey: KeyObject };
  close(): Promise<void>;
}

const issuers: FakeIssuer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(issuers.splice(0).map((issuer) => issuer.close()));
});

function newKey() {
  return { kid: randomUUID(), ...generateKeyPairSync('rsa', { modulusLength: 2048 }) };
}

/**
 * With `path`, the issuer identifier has that path and discovery is served where `discoveryAt`
 * says: the RFC 8414 §3.1 place (the well-known name, then the path) or the OpenID Connect one
 * (the path, then /.well-known/openid-configuration).
 */
async function startFakeIssuer({ path = '', discoveryAt = 'rfc8414' }: { path?: string; discoveryAt?: 'rfc8414' | 'oidc' } = {}): Promise<FakeIssuer> {
  const held: ServerResponse[] = [];
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}${path}`;
  const discoveryPath = discoveryAt === 'oidc' ? `${path}/.well-known/openid-configuration` : `${DISCOVERY_PATH}${path}`;
  const issuer: FakeIssuer = {
    url,
    asked: [],
    hits: { discovery: 0, jwks: 0 },
    discovery: 'ok',
    jwks: 'ok',
    keys: [newKey()],
    addKey() {
      const key = newKey();
      issuer.keys.push(key);
      return key;
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const answer = async (res: ServerResponse, how: Answer, body: () => Promise<unknown>) => {
    if (how === 'silent') return void held.push(res);
    if (how === '500') return void res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json');
    if (how === 'not-json') return void res.end('{"keys": [');
    if (how === 'not-a-key-set') return void res.end('{"keys": "none"}');
    const text = JSON.stringify(await body());
    if (how === 'huge' || how === 'huge-chunked') {
      // Valid, and what was asked for, but padded past any sane size: 1 MiB of white space.
      const padded = `${text.slice(0, -1)}${' '.repeat(1024 * 1024)}}`;
      if (how === 'huge') res.setHeader('content-length', Buffer.byteLength(padded));
      for (let at = 0; at < padded.length; at += 64 * 1024) res.write(padded.slice(at, at + 64 * 1024));
      return void res.end();
    }
    res.end(text);
  };
  server.on('request', (req, res) => {
    issuer.asked.push(req.url ?? '');
    if (req.url === discoveryPath) {
      issuer.hits.discovery += 1;
      void answer(res, issuer.discovery, async () => ({ issuer: url, jwks_uri: `${origin}${JWKS_PATH}` }));
    } else if (req.url === JWKS_PATH) {
      issuer.hits.jwks += 1;
      const jwks = async () => ({
        keys: await Promise.all(issuer.keys.map(async (key) => ({ ...(await exportJWK(key.publicKey)), kid: key.kid, alg: 'RS256', use: 'sig' }))),
      });
      void answer(res, issuer.jwks, jwks);
    } else {
      res.writeHead(404).end();
    }
  });
  issuers.push(issuer);
  return issuer;
}

/** An access token as Tessera makes one, signed by `key` (by default the issuer's first). */
function tokenFrom(issuer: FakeIssuer, key: { kid: string; privateKey: KeyObject } = issuer.keys[0]!): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: issuer.url, sub: 'user-1', aud: [AUDIENCE], client_id: 'gateway', scope: 'orders:read', jti: randomUUID(), iat: now, exp: now + 900 };
  return forgeJwt(key, claims);
}

function verifierFor(issuer: FakeIssuer, options: Partial<VerifierOptions> = {}): Verifier {
  return createVerifier({ issuer: issuer.url, audience: AUDIENCE, ...options });
}

/** The error a verification was rejected with (the test fails if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<VerificationError> {
  return promise.then(
    () => expect.unreachable('the verification succeeded'),
    (error: VerificationError) => error,
  );
}

const UNAVAILABLE = {
  status: 503,
  headers: { 'Cache-Control': 'no-store', 'Retry-After': '5' },
  body: { error: 'temporarily_unavailable', error_description: 'the token issuer cannot be reached' },
};

async function expectUnavailable(verifier: Verifier, token: string): Promise<void> {
  const error = await rejection(verifier.verifyAccessToken(token));
  expect(error).toBeInstanceOf(IssuerUnavailableError);
  expect(verifier.errorResponse(error)).toEqual(UNAVAILABLE);
}

/** Many requests at once and then one after another, as a busy service would make them. */
async function expectUnavailableUnderLoad(verifier: Verifier, token: string): Promise<void> {
  await Promise.all(Array.from({ length: 10 }, () => expectUnavailable(verifier, token)));
  for (let i = 0; i < 10; i++) await expectUnavailable(verifier, token);
}

/** Moves Date (only: timers stay real) `ms` on from where it stands. */
function moveClock(ms: number): void {
  if (vi.isFakeTimers()) vi.setSystemTime(Date.now() + ms);
  else vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + ms });
}

describe('an issuer with a path (RFC 8414 §3.1)', () => {
  it('is discovered at the well-known name followed by the path', async () => {
    const issuer = await startFakeIssuer({ path: '/tenants/a' });
    const verifier = verifierFor(issuer);
    expect(await verifier.verifyAccessToken(await tokenFrom(issuer))).toMatchObject({ sub: 'user-1', iss: issuer.url });
    expect(issuer.asked).toEqual(['/.well-known/oauth-authorization-server/tenants/a', JWKS_PATH]);
  });

  it('that serves only the OpenID Connect form is discovered there next', async () => {
    const issuer = await startFakeIssuer({ path: '/tenants/a', discoveryAt: 'oidc' });
    const verifier = verifierFor(issuer);
    expect(await verifier.verifyAccessToken(await tokenFrom(issuer))).toMatchObject({ sub: 'user-1' });
    expect(issuer.asked).toEqual(['/.well-known/oauth-authorization-server/tenants/a', '/tenants/a/.well-known/openid-configuration', JWKS_PATH]);
  });

  it('whose metadata names another issuer is not trusted, wherever it was found', async () => {
    const issuer = await startFakeIssuer({ path: '/tenants/a' });
    // The same server, but the verifier was told the issuer is /tenants/b: the metadata found for
    // /tenants/a must not be taken for it (there is none at /tenants/b's places: 404, then 404).
    const verifier = createVerifier({ issuer: issuer.url.replace('/tenants/a', '/tenants/b'), audience: AUDIENCE });
    await expectUnavailable(verifier, await tokenFrom(issuer));
    expect(issuer.hits).toEqual({ discovery: 0, jwks: 0 });
  });
});

describe('an issuer whose answer is too large', () => {
  for (const how of ['huge', 'huge-chunked'] as const) {
    it(`(${how === 'huge' ? 'declared in Content-Length' : 'sent chunked, with no length'}) is unavailable, for discovery and for the key set`, async () => {
      const issuer = await startFakeIssuer();
      issuer.discovery = how;
      const verifier = verifierFor(issuer);
      const token = await tokenFrom(issuer);
      await expectUnavailable(verifier, token);
      expect(issuer.hits).toEqual({ discovery: 1, jwks: 0 });

      issuer.discovery = 'ok';
      issuer.jwks = how;
      moveClock(5_000);
      await expectUnavailable(verifier, token);
      expect(issuer.hits).toEqual({ discovery: 2, jwks: 1 });

      // The same documents at their usual size work.
      issuer.jwks = 'ok';
      moveClock(5_000);
      expect(await verifier.verifyAccessToken(token)).toMatchObject({ sub: 'user-1' });
    });
  }
});

describe('a token that is not a string', () => {
  it('is InvalidTokenError, and the issuer is not asked', async () => {
    const issuer = await startFakeIssuer();
    const verifier = verifierFor(issuer);
    for (const token of [42, {}, ['a.b.c'], true, Buffer.from('a.b.c'), 'x'.repeat(8193)]) {
      const error = await rejection(verifier.verifyAccessToken(token));
      expect(error).toBeInstanceOf(InvalidTokenError);
      expect(verifier.errorResponse(error)).toEqual({
        status: 401,
        headers: { 'Cache-Control': 'no-store', 'WWW-Authenticate': `Bearer realm="${AUDIENCE}", error="invalid_token", error_description="${NOT_VALID}"` },
        body: { error: 'invalid_token', error_description: NOT_VALID },
      });
    }
    // No token at all: the bare challenge (RFC 6750 §3.1).
    for (const token of [undefined, null, '']) {
      const error = await rejection(verifier.verifyAccessToken(token));
      expect(error).toBeInstanceOf(InvalidTokenError);
      expect(verifier.errorResponse(error)).toEqual({
        status: 401,
        headers: { 'Cache-Control': 'no-store', 'WWW-Authenticate': `Bearer realm="${AUDIENCE}"` },
        body: { error: 'invalid_token', error_description: REQUIRED },
      });
    }
    expect(issuer.hits).toEqual({ discovery: 0, jwks: 0 });

    // The control: a genuine token verifies, and it took one discovery and one key set.
    expect(await verifier.verifyAccessToken(await tokenFrom(issuer))).toMatchObject({ sub: 'user-1', client_id: 'gateway', scope: 'orders:read' });
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 1 });
  });
});

describe('a kid the key set does not hold', () => {
  it('is InvalidTokenError after one refetch, and refetches at most once per 30 s however many such tokens come', async () => {
    const issuer = await startFakeIssuer();
    const verifier = verifierFor(issuer);
    await verifier.verifyAccessToken(await tokenFrom(issuer));
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 1 });

    const stranger = await tokenFrom(issuer, newKey());
    const expectRefused = async () => {
      const error = await rejection(verifier.verifyAccessToken(stranger));
      expect(error).toBeInstanceOf(InvalidTokenError);
      expect(error.description).toBe(NOT_VALID);
    };
    // Within 30 s of the last fetch: refused without asking.
    await Promise.all(Array.from({ length: 10 }, expectRefused));
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 1 });

    // Past the floor: one refetch, shared by every request waiting on it, and still not there.
    moveClock(30_000);
    await Promise.all(Array.from({ length: 10 }, expectRefused));
    for (let i = 0; i < 10; i++) await expectRefused();
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 2 });

    // The control: a key the issuer added (a rotation) is found by that same refetch, past the floor again.
    const rotated = issuer.addKey();
    moveClock(30_000);
    expect(await verifier.verifyAccessToken(await tokenFrom(issuer, rotated))).toMatchObject({ sub: 'user-1' });
    await expectRefused();
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 3 });
  });
});

describe('an issuer that answers badly', () => {
  it.each([
    ['the JWKS answers 500', { jwks: '500' }],
    ['the JWKS is not JSON', { jwks: 'not-json' }],
    ['the JWKS is JSON but not a key set', { jwks: 'not-a-key-set' }],
    ['discovery answers 500', { discovery: '500' }],
    ['discovery is not JSON', { discovery: 'not-json' }],
  ] as const)('%s: IssuerUnavailableError, one fetch per 5 s however many requests, then recovery', async (_name, answers) => {
    const issuer = await startFakeIssuer();
    Object.assign(issuer, answers);
    const verifier = verifierFor(issuer);
    const token = await tokenFrom(issuer);

    await expectUnavailableUnderLoad(verifier, token);
    const once = { discovery: 1, jwks: 'jwks' in answers ? 1 : 0 };
    expect(issuer.hits).toEqual(once);

    // Retry-After has passed: one more try, still failing.
    moveClock(5_000);
    await expectUnavailableUnderLoad(verifier, token);
    const twice = { discovery: 'jwks' in answers ? 1 : 2, jwks: 'jwks' in answers ? 2 : 0 };
    expect(issuer.hits).toEqual(twice);

    // The issuer recovers: the next try after the floor verifies.
    issuer.discovery = 'ok';
    issuer.jwks = 'ok';
    await expectUnavailable(verifier, token);
    moveClock(5_000);
    expect(await verifier.verifyAccessToken(token)).toMatchObject({ sub: 'user-1' });
  });

  it('an issuer that does not answer at all: IssuerUnavailableError once the timeout passes, one request held', async () => {
    const issuer = await startFakeIssuer();
    issuer.discovery = 'silent';
    const verifier = verifierFor(issuer, { timeout: 200 });
    const token = await tokenFrom(issuer);
    await expectUnavailableUnderLoad(verifier, token);
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 0 });

    // A JWKS that does not answer either, once discovery does.
    issuer.discovery = 'ok';
    issuer.jwks = 'silent';
    moveClock(5_000);
    await expectUnavailableUnderLoad(verifier, token);
    expect(issuer.hits).toEqual({ discovery: 2, jwks: 1 });
  });

  it('keys once fetched keep verifying while every refresh fails, and the refreshes keep to the floor', async () => {
    const issuer = await startFakeIssuer();
    const verifier = verifierFor(issuer);
    await verifier.verifyAccessToken(await tokenFrom(issuer));
    issuer.jwks = '500';
    // Eleven minutes on, the keys are stale (they serve ten): each refresh fails, the old keys serve.
    moveClock(11 * 60_000);
    const token = await tokenFrom(issuer);
    await Promise.all(Array.from({ length: 10 }, () => verifier.verifyAccessToken(token)));
    for (let i = 0; i < 10; i++) await verifier.verifyAccessToken(token);
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 2 });
    // A kid it does not hold, while the issuer fails: the issuer's fault, not the token's.
    moveClock(30_000);
    await expectUnavailable(verifier, await tokenFrom(issuer, issuer.addKey()));
  });
});

describe('the middleware, on a bad issuer', () => {
  it('answers 503 temporarily_unavailable with Retry-After, and a missing scope still 403 once the issuer is back', async () => {
    const issuer = await startFakeIssuer();
    issuer.jwks = 'not-json';
    const verifier = verifierFor(issuer);
    const app = express();
    app.get('/orders', verifier.requireScopes('orders:write'), (_req, res) => void res.json({ ok: true }));
    const token = await tokenFrom(issuer);

    const res = await request(app).get('/orders').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(503);
    expect(res.body).toEqual(UNAVAILABLE.body);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['www-authenticate']).toBeUndefined();

    issuer.jwks = 'ok';
    moveClock(5_000);
    const forbidden = await request(app).get('/orders').set('Authorization', `Bearer ${token}`);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toEqual({ error: 'insufficient_scope', error_description: 'the access token lacks a required scope' });
    expect(forbidden.headers['www-authenticate']).toBe(
      `Bearer realm="${AUDIENCE}", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:write"`,
    );
    const error = await rejection(verifier.verifyAccessToken(token, { scopes: ['orders:write'] }));
    expect(error).toBeInstanceOf(InsufficientScopeError);
    expect(issuer.hits).toEqual({ discovery: 1, jwks: 2 });
  });
});
