import { type KeyObject, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import { decodeProtectedHeader, type JWTPayload } from 'jose';
import request from 'supertest';
import { createVerifier, type Verifier } from '@tessera-auth/verify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { maintainSigningKeys, promotionDelaySeconds, rotateSigningKey } from '../src/keys/lifecycle.js';
import { createFakeClock } from './helpers/clock.js';
import { type ForgeOptions, forgeJwt, signRawJwt } from './helpers/forge.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { makeNextKeyDue } from './helpers/keys.js';
import { createTestClient, createTestUser, passwordGrant, startTestService, type TestClient, testEnv, type TestService } from './helpers/service.js';

/*
 * @tessera-auth/verify as a downstream service uses it: Tessera listens on loopback under its real
 * ISSUER, and a separate Express app (an "orders API") verifies tokens against Tessera's
 * discovery document and JWKS, fetched over HTTP. The verifier runs on the real clock.
 */

const DISCOVERY_PATH = '/.well-known/oauth-authorization-server';
const JWKS_PATH = '/.well-known/jwks.json';
const AUDIENCE = 'orders-api';
const NOT_VALID = 'the access token is not valid';
const ALL_SCOPES = ['profile', 'orders:read', 'orders:write'];

interface RunningTessera {
  readonly issuer: string;
  readonly service: TestService;
  /** Requests that reached Tessera, by what a verifier fetches. */
  readonly hits: { discovery: number; jwks: number };
  /** While true, every connection to Tessera is dropped: the service is unreachable. */
  down: boolean;
  close(): Promise<void>;
}

function listenOnLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

async function closeServer(server: Server | undefined): Promise<void> {
  if (server === undefined || !server.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Tessera on 127.0.0.1, ISSUER its real URL, behind a counter that sees every request first. */
async function startTessera(): Promise<RunningTessera> {
  // Listen first (port 0), so ISSUER can name the real port without a race for it.
  const server = createServer();
  const port = await listenOnLoopback(server);
  const issuer = `http://127.0.0.1:${port}`;
  let database: TestDatabase | undefined;
  try {
    database = await createTestDatabase();
    // The verifier checks exp on the real clock, so Tessera's clock starts at real time.
    const service = await startTestService(database, {
      env: testEnv(database, { ISSUER: issuer, PORT: String(port) }),
      clock: createFakeClock(Date.now()),
    });
    const front = express();
    const tessera: RunningTessera = {
      issuer,
      service,
      hits: { discovery: 0, jwks: 0 },
      down: false,
      async close() {
        await closeServer(server);
        await service.close();
        await database?.drop();
      },
    };
    front.use((req, res, next) => {
      if (tessera.down) {
        res.socket?.destroy();
        return;
      }
      if (req.path === DISCOVERY_PATH) tessera.hits.discovery += 1;
      if (req.path === JWKS_PATH) tessera.hits.jwks += 1;
      next();
    });
    front.use(service.app);
    server.on('request', front);
    return tessera;
  } catch (error) {
    await closeServer(server);
    await database?.drop();
    throw error;
  }
}

/** The downstream service: an orders API protected by @tessera-auth/verify. */
function ordersApi(verifier: Verifier): Express {
  const app = express();
  app.get('/orders', verifier.requireScopes('orders:read'), (req, res) => {
    res.json({ orders: [], for: req.auth!.sub });
  });
  app.post('/orders', verifier.requireScopes('orders:write'), (req, res) => {
    res.status(201).json({ created: true, by: req.auth!.sub });
  });
  app.get('/me', verifier.authenticate, (req, res) => {
    const auth = req.auth!;
    res.json({ ...auth, scopes: [...auth.scopes].sort() });
  });
  return app;
}

let tessera: RunningTessera;
let verifier: Verifier;
let api: Express;
let client: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  tessera = await startTessera();
  verifier = createVerifier({ issuer: tessera.issuer, audience: AUDIENCE });
  api = ordersApi(verifier);
  // The gateway's tokens are meant for the orders API: its audience names it.
  client = await createTestClient(tessera.service, { audience: [AUDIENCE], scopes: ALL_SCOPES, defaultScopes: ['profile'] });
  user = await createTestUser(tessera.service, { scopes: ALL_SCOPES });
});
afterAll(async () => {
  await tessera?.close();
});

/** An access token from Tessera's password grant, as a gateway would get it. */
async function passwordToken(scope: string, forClient: TestClient = client, at: RunningTessera = tessera): Promise<string> {
  const res = await passwordGrant(at.service.app, forClient, user, { scope });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

const call = (method: 'get' | 'post', path: string, token?: string, app: Express = api) => {
  const req = request(app)[method](path);
  return token === undefined ? req : req.set('Authorization', `Bearer ${token}`);
};

/** RFC 6750 §3.1: 401, invalid_token in the challenge and the body, never cached. */
function expectInvalidToken(res: request.Response, description = NOT_VALID): void {
  expect(res.status).toBe(401);
  expect(res.body).toEqual({ error: 'invalid_token', error_description: description });
  expect(res.headers['www-authenticate']).toBe(`Bearer realm="${AUDIENCE}", error="invalid_token", error_description="${description}"`);
  expect(res.headers['cache-control']).toBe('no-store');
}

/** Refused at every protected route, including one whose scope the forged token claims. */
async function expectRefused(token: string, description = NOT_VALID): Promise<void> {
  expectInvalidToken(await call('get', '/orders', token), description);
  expectInvalidToken(await call('post', '/orders', token), description);
  expectInvalidToken(await call('get', '/me', token), description);
}

/** 503 temporarily_unavailable: not the token's fault, so no challenge; retry later. */
function expectUnavailable(res: request.Response): void {
  expect(res.status).toBe(503);
  expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the token issuer cannot be reached' });
  expect(res.headers['retry-after']).toBe('5');
  expect(res.headers['www-authenticate']).toBeUndefined();
  expect(res.headers['cache-control']).toBe('no-store');
}

// --- forging -------------------------------------------------------------------------------

const realNow = () => Math.floor(Date.now() / 1000);

function genuineKey(): { kid: string; privateKey: KeyObject } {
  return tessera.service.deps.keys.current().signing;
}

/** The claims Tessera would put in a token for `user` via `client`, on the real clock. */
function validClaims(overrides: Record<string, unknown> = {}): JWTPayload {
  const now = realNow();
  return {
    iss: tessera.issuer,
    sub: user.id,
    aud: [AUDIENCE, tessera.issuer],
    client_id: client.id,
    scope: 'orders:read orders:write',
    jti: randomUUID(),
    iat: now,
    exp: now + 900,
    ...overrides,
  };
}

/** Signs with jose; by default exactly like Tessera (genuine key, RS256, at+jwt, its kid). */
const forge = (options: ForgeOptions = {}): Promise<string> => forgeJwt(genuineKey(), validClaims(options.claims), options);

/** Signs bytes by hand with node:crypto, for headers jose would refuse to produce. */
const signRaw = (header: Record<string, unknown>, claims: JWTPayload, privateKey: KeyObject = genuineKey().privateKey): string =>
  signRawJwt(header, claims, privateKey);

// --- good tokens ---------------------------------------------------------------------------

describe('a valid access token', () => {
  it('passes every route its scopes allow, and req.auth carries sub, client_id and the scopes', async () => {
    const token = await passwordToken('orders:read orders:write');

    const list = await call('get', '/orders', token);
    expect(list.status).toBe(200);
    expect(list.body).toEqual({ orders: [], for: user.id });

    const create = await call('post', '/orders', token);
    expect(create.status).toBe(201);
    expect(create.body).toEqual({ created: true, by: user.id });

    const me = await call('get', '/me', token);
    expect(me.status).toBe(200);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(me.body).toEqual({
      iss: tessera.issuer,
      sub: user.id,
      aud: [AUDIENCE, tessera.issuer],
      client_id: client.id,
      scope: 'orders:read orders:write',
      scopes: ['orders:read', 'orders:write'],
      jti: claims['jti'],
      iat: claims['iat'],
      exp: claims['exp'],
      auth_time: claims['auth_time'],
      sid: claims['sid'],
    });
    expect(me.body.sid).toEqual(expect.any(String));
  });

  it('verifyAccessToken() gives the same claims outside Express', async () => {
    const token = await passwordToken('orders:read');
    const auth = await verifier.verifyAccessToken(token);
    expect(auth).toMatchObject({ iss: tessera.issuer, sub: user.id, client_id: client.id, scope: 'orders:read' });
    expect([...auth.scopes]).toEqual(['orders:read']);
  });

  it('accepts a token forged exactly like a genuine one (so the refusals below test one thing each)', async () => {
    const token = await forge();
    expect((await call('get', '/orders', token)).status).toBe(200);
    expect((await call('post', '/orders', token)).status).toBe(201);
    const hand = signRaw({ alg: 'RS256', typ: 'at+jwt', kid: genuineKey().kid }, validClaims());
    expect((await call('get', '/orders', hand)).status).toBe(200);
  });
});

// --- missing token and missing scope -------------------------------------------------------

describe('RFC 6750 errors', () => {
  it('a request without a token gets 401 and a bare challenge with no error code (§3.1)', async () => {
    for (const [method, path] of [['get', '/orders'], ['post', '/orders'], ['get', '/me']] as const) {
      const res = await call(method, path);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe(`Bearer realm="${AUDIENCE}"`);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toEqual({ error: 'invalid_token', error_description: 'a bearer access token is required' });
    }
  });

  it('an Authorization header that is not a bearer token is invalid_token', async () => {
    const token = await passwordToken('orders:read');
    for (const header of [`Basic ${Buffer.from('a:b').toString('base64')}`, token, 'Bearer', `Bearer  ${token}`, 'Bearer a"b']) {
      const res = await request(api).get('/orders').set('Authorization', header);
      expectInvalidToken(res, 'the Authorization header is not a bearer token');
    }
  });

  it('a token lacking the route scope gets 403 insufficient_scope naming the scope (§3.1)', async () => {
    const token = await passwordToken('orders:read');
    expect((await call('get', '/orders', token)).status).toBe(200);

    const res = await call('post', '/orders', token);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'insufficient_scope', error_description: 'the access token lacks a required scope' });
    expect(res.headers['www-authenticate']).toBe(
      `Bearer realm="${AUDIENCE}", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:write"`,
    );
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('a token with no orders scope at all is 403 on both routes, and still authenticates', async () => {
    const token = await passwordToken('profile');
    for (const [method, path, scope] of [['get', '/orders', 'orders:read'], ['post', '/orders', 'orders:write']] as const) {
      const res = await call(method, path, token);
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ error: 'insufficient_scope', error_description: 'the access token lacks a required scope' });
      expect(res.headers['www-authenticate']).toContain('error="insufficient_scope"');
      expect(res.headers['www-authenticate']).toContain(`scope="${scope}"`);
    }
    const me = await call('get', '/me', token);
    expect(me.status).toBe(200);
    expect(me.body.scopes).toEqual(['profile']);
  });
});

// --- audiences -------------------------------------------------------------------------------
// Forged and confused tokens (ATTACKS.md A) are thrown at the verifier in test/security/a-forged-tokens.test.ts.

describe('a token for another audience is 401 invalid_token', () => {
  it("a genuine Tessera token meant for another audience (the gateway's client does not name this API)", async () => {
    const elsewhere = await createTestClient(tessera.service, { scopes: ALL_SCOPES });
    const token = await passwordToken('orders:read orders:write', elsewhere);
    await expectRefused(token);
  });
});

// --- discovery, outages and key rotation ---------------------------------------------------

describe('discovery and the key set', () => {
  it('discovers once and fetches the JWKS once, however many requests and however concurrent', async () => {
    const fresh = ordersApi(createVerifier({ issuer: tessera.issuer, audience: AUDIENCE }));
    const token = await passwordToken('orders:read orders:write');
    const before = { ...tessera.hits };

    const first = await Promise.all(Array.from({ length: 5 }, () => call('get', '/orders', token, fresh)));
    for (const res of first) expect(res.status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect((await call('post', '/orders', token, fresh)).status).toBe(201);
      expect((await call('get', '/me', await passwordToken('orders:read'), fresh)).status).toBe(200);
    }

    expect(tessera.hits.discovery - before.discovery).toBe(1);
    expect(tessera.hits.jwks - before.jwks).toBe(1);
  });

  it('answers 503 temporarily_unavailable when Tessera is unreachable (a closed port)', async () => {
    const probe = createServer();
    const port = await listenOnLoopback(probe);
    await closeServer(probe);
    const nowhere = ordersApi(createVerifier({ issuer: `http://127.0.0.1:${port}`, audience: AUDIENCE }));
    const token = await passwordToken('orders:read orders:write');

    expectUnavailable(await call('get', '/orders', token, nowhere));
    expectUnavailable(await call('post', '/orders', token, nowhere));
    expectUnavailable(await call('get', '/me', token, nowhere));
    // A request without a token needs no issuer: still the bare 401 challenge.
    const anonymous = await call('get', '/orders', undefined, nowhere);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe(`Bearer realm="${AUDIENCE}"`);
  });

  it('does not cache a failed discovery (it retries once Retry-After has passed), and once discovered keeps verifying while Tessera is down', async () => {
    const fresh = ordersApi(createVerifier({ issuer: tessera.issuer, audience: AUDIENCE }));
    const token = await passwordToken('orders:read');
    const before = { ...tessera.hits };
    try {
      tessera.down = true;
      expectUnavailable(await call('get', '/orders', token, fresh));
      tessera.down = false;
      // Within the 5 s it told clients to wait, it does not ask again.
      expectUnavailable(await call('get', '/orders', token, fresh));
      expect(tessera.hits.discovery - before.discovery).toBe(0);
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 5_000 });
      expect((await call('get', '/orders', token, fresh)).status).toBe(200);
      expect(tessera.hits.discovery - before.discovery).toBe(1);
      vi.useRealTimers();

      // Offline verification: the cached key set needs nothing from Tessera.
      tessera.down = true;
      expect((await call('get', '/orders', token, fresh)).status).toBe(200);
      expectInvalidToken(await call('get', '/orders', await forge({ claims: { aud: 'billing-api' } }), fresh));
    } finally {
      vi.useRealTimers();
      tessera.down = false;
    }
  });
});

describe('signing-key rotation', () => {
  let rotating: RunningTessera;

  beforeAll(async () => {
    rotating = await startTessera();
  });
  afterAll(async () => {
    vi.useRealTimers();
    await rotating?.close();
  });

  it('accepts tokens of a key added after the verifier cached the JWKS, once it refreshes, and old tokens still', async () => {
    const { service } = rotating;
    const gateway = await createTestClient(service, { audience: [AUDIENCE], scopes: ALL_SCOPES });
    await createTestUser(service, { username: user.username, password: user.password, scopes: ALL_SCOPES });
    const downstream = ordersApi(createVerifier({ issuer: rotating.issuer, audience: AUDIENCE }));

    // The verifier caches a JWKS that holds only the first key.
    const oldKid = service.deps.keys.current().signing.kid;
    const oldToken = await passwordToken('orders:read', gateway, rotating);
    expect((await call('get', '/orders', oldToken, downstream)).status).toBe(200);
    expect(rotating.hits).toEqual({ discovery: 1, jwks: 1 });

    // tessera keys rotate: a next key, published at once, signing only after the promotion delay.
    const { deps } = service;
    const { kid: newKid } = await rotateSigningKey({ db: deps.db, ring: deps.keyRing, log: deps.log, config: deps.config, serving: true }, 'test');
    await service.deps.keys.reload();
    expect(service.deps.keys.current().signing.kid).toBe(oldKid);
    // The delay passes for the keys (on the database's clock) and for Tessera and the verifier (below).
    await makeNextKeyDue(deps.db);
    service.clock.advance((promotionDelaySeconds(service.config) + 1) * 1000);
    expect(await maintainSigningKeys({ ...service.deps, ring: service.deps.keyRing })).toBe(true);
    await service.deps.keys.reload();
    expect(service.deps.keys.current().signing.kid).toBe(newKid);

    // The verifier's clock moves on as Tessera's did (only Date is faked; timers stay real): past the
    // verifier's 30 s refetch cooldown, within its 10 min cache lifetime.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(service.clock.now());
    try {
      const newToken = await passwordToken('orders:read orders:write', gateway, rotating);
      expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
      expect((await call('get', '/orders', newToken, downstream)).status).toBe(200);
      expect((await call('post', '/orders', newToken, downstream)).status).toBe(201);
      // The unknown kid made it fetch the JWKS once more; discovery was not repeated.
      expect(rotating.hits).toEqual({ discovery: 1, jwks: 2 });

      // The retired key stays published: tokens it signed verify until they expire.
      expect((await call('get', '/orders', oldToken, downstream)).status).toBe(200);
      expect(rotating.hits).toEqual({ discovery: 1, jwks: 2 });
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a key set that cannot be refreshed', () => {
  /** A JWKS endpoint of our own in front of Tessera's, which can answer 503. */
  async function flakyJwks() {
    let failing = false;
    let refused = 0;
    const app = express();
    app.get('/jwks', async (_req, res) => {
      if (failing) {
        refused += 1;
        return void res.status(503).send('unavailable');
      }
      const upstream = await fetch(`${tessera.issuer}${JWKS_PATH}`);
      res.type('application/json').send(await upstream.text());
    });
    const server = createServer(app);
    const port = await listenOnLoopback(server);
    return {
      uri: `http://127.0.0.1:${port}/jwks`,
      fail: (on: boolean) => (failing = on),
      /** How many requests it answered 503. */
      refused: () => refused,
      close: () => closeServer(server),
    };
  }

  it('a 5xx from the JWKS before any keys are cached is 503, never 401 (clients would drop a valid token)', async () => {
    const jwks = await flakyJwks();
    try {
      jwks.fail(true);
      const res = await call('get', '/orders', await passwordToken('orders:read'), ordersApi(createVerifier({ issuer: tessera.issuer, audience: AUDIENCE, jwksUri: jwks.uri })));
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the token issuer cannot be reached' });
      expect(res.headers['www-authenticate']).toBeUndefined();
    } finally {
      await jwks.close();
    }
  });

  it('keeps verifying with the keys it has when a refresh fails (stale-if-error)', async () => {
    const jwks = await flakyJwks();
    const app = ordersApi(createVerifier({ issuer: tessera.issuer, audience: AUDIENCE, jwksUri: jwks.uri }));
    const tesseraNow = tessera.service.clock.now();
    try {
      const token = await passwordToken('orders:read');
      expect((await call('get', '/orders', token, app)).status).toBe(200);
      jwks.fail(true);
      // Eleven minutes later the cache is stale (jose keeps it ten): the refresh fails, the old keys serve.
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 11 * 60_000 });
      const fresh = await passwordTokenAt(Date.now());
      expect((await call('get', '/orders', fresh, app)).status).toBe(200);
      expect(jwks.refused()).toBe(1);
    } finally {
      vi.useRealTimers();
      // Tessera's clock back where the other tests expect it, on the real time its tokens are checked against.
      tessera.service.clock.set(tesseraNow);
      await jwks.close();
    }
  });
});

/** A token whose iat is `at` (Tessera's clock moved there). */
async function passwordTokenAt(at: number): Promise<string> {
  tessera.service.clock.set(at);
  return passwordToken('orders:read');
}
