import { createHmac, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import { type CryptoKey, decodeJwt, exportJWK, generateKeyPair, type JWTPayload, UnsecuredJWT } from 'jose';
import request from 'supertest';
import { createVerifier } from '@tessera-auth/verify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createFakeClock } from '../helpers/clock.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { b64url, type ForgeOptions, forgeJwt, signRawJwt } from '../helpers/forge.js';
import { createTestClient, createTestUser, passwordGrant, startTestService, testEnv, type TestClient, type TestService, uniqueName } from '../helpers/service.js';

/*
 * ATTACKS.md A: forged and confused access tokens, built here with jose and node:crypto (the
 * jwt_tool classes: none, key confusion, kid injection, jku/x5u/jwk injection, algorithm
 * substitution, claim tampering), thrown at every place that accepts an access token:
 *
 * - GET /userinfo and its alias GET /users/me;
 * - POST /introspect, the token as the introspected `token` (the caller authenticates with client
 *   credentials only: a bearer token is no way to call it, shown at the end);
 * - the admin API (every /admin route goes through requireAdmin, src/http/admin/auth.ts): a
 *   forged admin-scoped token creating a user, and listing them;
 * - POST /users/me/password, which takes the bearer token too (src/http/password-change.ts);
 * - @tessera-auth/verify (packages/verify) on a small downstream Express app, pointed at this
 *   Tessera's discovery document and JWKS over a loopback listener.
 *
 * Each target has its own "rejected" (401 invalid_token with the RFC 6750 challenge, or
 * {"active":false}) and its own positive control: a genuine token, and tokens forged exactly like
 * a genuine one by the same builders, are accepted, so no row of the table passes vacuously. The
 * forged claims name an admin through the gateway's client, with the admin scope and the
 * verifier's audience: signed with Tessera's key they would pass everywhere.
 *
 * Tessera's clock is the real time (set before each test), because the verifier checks exp, nbf and
 * iat on the real clock.
 */

const AUDIENCE = 'orders-api';
const NOT_VALID = 'the access token is not valid';
const EXPIRED = 'the access token has expired';
const TOO_LONG = 'the access token is too long';
const INACTIVE = '{"active":false}';
const USER_PATHS = ['/userinfo', '/users/me'] as const;
const ADMIN_SCOPE = 'admin orders:read';

let database: TestDatabase;
let service: TestService;
let tesseraServer: Server;
let issuer: string;
let downstream: Express;
let gateway: TestClient;
let admin: Awaited<ReturnType<typeof createTestUser>>;
/** A live session of the admin: every user token Tessera accepts names one (`sid`, ATTACKS.md I3). */
let sid: string;
/** The attacker's own keys: an RSA one (also served by the listener), an EC and an Ed25519 one. */
let attacker: { rsa: KeyPair; ec: KeyPair; ed: KeyPair };
/** A listener of the attacker's that serves the attacker's JWKS to anyone who asks, and counts. */
let listener: Server;
let listenerUrl: string;
let listenerHits = 0;

interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

function listenOnLoopback(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

async function closeServer(server: Server | undefined): Promise<void> {
  if (server === undefined || !server.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

beforeAll(async () => {
  // Tessera listens first (port 0), so ISSUER can name its real port.
  tesseraServer = createServer();
  issuer = await listenOnLoopback(tesseraServer);
  database = await createTestDatabase();
  service = await startTestService(database, { env: testEnv(database, { ISSUER: issuer }), clock: createFakeClock(Date.now()) });
  tesseraServer.on('request', service.app);

  const verifier = createVerifier({ issuer, audience: AUDIENCE });
  downstream = express();
  downstream.get('/reports', verifier.requireScopes('admin'), (req, res) => {
    res.json({ sub: req.auth!.sub });
  });

  gateway = await createTestClient(service, { audience: [AUDIENCE], scopes: ['admin', 'profile', 'orders:read'], defaultScopes: ['profile'] });
  admin = await createTestUser(service, { scopes: ['profile', 'orders:read'], roles: { administrators: ['admin'] } });
  sid = decodeJwt((await passwordGrant(service.app, gateway, admin, { scope: ADMIN_SCOPE })).body.access_token).sid as string;

  const [rsa, ec, ed] = await Promise.all([
    generateKeyPair('RS256', { modulusLength: 2048, extractable: true }),
    generateKeyPair('ES256'),
    generateKeyPair('EdDSA'),
  ]);
  attacker = { rsa, ec, ed };
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'attacker', alg: 'RS256', use: 'sig' }] });
  listener = createServer((_req, res) => {
    listenerHits += 1;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(jwks);
  });
  listenerUrl = await listenOnLoopback(listener);
});
beforeEach(() => {
  service.clock.set(Date.now());
});
afterAll(async () => {
  await closeServer(listener);
  await closeServer(tesseraServer);
  await service?.close();
  await database?.drop();
});

// --- forging -------------------------------------------------------------------------------

const now = () => Math.floor(Date.now() / 1000);

function genuineKey(): { kid: string; privateKey: KeyObject } {
  return service.deps.keys.current().signing;
}

/** What Tessera would sign for the admin via the gateway, now; every target accepts it. */
function validClaims(overrides: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: issuer,
    sub: admin.id,
    aud: [AUDIENCE, issuer],
    client_id: gateway.id,
    scope: ADMIN_SCOPE,
    jti: randomUUID(),
    iat: now(),
    exp: now() + 900,
    sid,
    ...overrides,
  };
}

/** Signs with jose; by default exactly like Tessera (the genuine key, RS256, at+jwt, its kid). */
const forge = (options: ForgeOptions = {}): Promise<string> => forgeJwt(genuineKey(), validClaims(options.claims), options);

/** Tessera's header with `changes`, signed by hand with the genuine key (for headers jose will not write). */
const signRaw = (changes: Record<string, unknown> = {}) =>
  signRawJwt({ alg: 'RS256', typ: 'at+jwt', kid: genuineKey().kid, ...changes }, validClaims(), genuineKey().privateKey);

/** An HMAC-signed token (key confusion: the "secret" is something the attacker knows). */
function signHmac(header: Record<string, unknown>, secret: string | Buffer, hash = 'sha256'): string {
  const input = `${b64url({ typ: 'at+jwt', ...header })}.${b64url(validClaims())}`;
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

/** An unsigned token: `alg` as given, an empty signature. */
const unsigned = (alg: string) => `${b64url({ alg, typ: 'at+jwt', kid: genuineKey().kid })}.${b64url(validClaims())}.`;

/** An access token from the password grant, as the gateway gets it for the admin. */
async function genuineToken(scope = ADMIN_SCOPE): Promise<string> {
  const res = await request(service.app)
    .post('/token')
    .type('form')
    .set('Authorization', gateway.basic)
    .send({ grant_type: 'password', username: admin.username, password: admin.password, scope });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

/** The genuine token's segments, for cutting and pasting. */
async function genuineParts(scope?: string): Promise<{ token: string; header: string; payload: string; signature: string }> {
  const token = await genuineToken(scope);
  const [header, payload, signature] = token.split('.') as [string, string, string];
  return { token, header, payload, signature };
}

/** The published key, exactly as a verifier (or an attacker) reads it from the JWKS. */
async function publishedKey(): Promise<{ jwk: Record<string, string>; key: KeyObject }> {
  const res = await request(service.app).get('/.well-known/jwks.json');
  const jwk = (res.body as { keys: Array<Record<string, string>> }).keys[0]!;
  return { jwk, key: createPublicKey({ key: jwk, format: 'jwk' }) };
}

// --- the cases -----------------------------------------------------------------------------

/**
 * Why a target refuses: most refusals are the generic "not valid"; Tessera says "expired" and "too
 * long" where that is the reason; a 1 MB token never reaches the application (Node's HTTP parser
 * answers 431 to a header over 16 KiB, the body parser 413 to a form over 16 KiB).
 */
type Reason = 'invalid' | 'expired' | 'too-long' | 'huge';
type Forgery = string | { readonly token: string; readonly reason: Reason };

interface ForgedCase {
  readonly id: string;
  readonly what: string;
  /** The forgeries, some shaped for the target they are thrown at. */
  forge(target: Target): Promise<readonly Forgery[]>;
}

const CASES: readonly ForgedCase[] = [
  {
    id: 'A1',
    what: 'alg none in any capitalisation, an empty or a stripped signature',
    forge: async () => {
      const { header, payload, signature } = await genuineParts();
      return [
        new UnsecuredJWT(validClaims()).encode(),
        ...['none', 'None', 'NONE', 'nOnE'].map(unsigned),
        `${b64url({ alg: 'none', typ: 'at+jwt', kid: genuineKey().kid })}.${payload}.${signature}`,
        unsigned('RS256'),
        `${header}.${payload}.`,
        `${header}.${payload}.${'A'.repeat(signature.length)}`,
      ];
    },
  },
  {
    id: 'A2',
    what: "HS256 keyed with the published RSA key, the right kid with an attacker's key, tampered claims",
    forge: async () => {
      const { jwk, key } = await publishedKey();
      const secrets = [
        key.export({ format: 'pem', type: 'spki' }),
        key.export({ format: 'pem', type: 'pkcs1' }),
        key.export({ format: 'der', type: 'spki' }),
        JSON.stringify(jwk),
        Buffer.from(jwk['n']!, 'base64url'),
      ];
      const { header, payload, signature } = await genuineParts('orders:read');
      const claims = decodeJwt(`${header}.${payload}.${signature}`);
      const tampered = (changes: Record<string, unknown>) => `${header}.${b64url({ ...claims, ...changes })}.${signature}`;
      return [
        ...secrets.map((secret) => signHmac({ alg: 'HS256', kid: jwk['kid'] }, secret)),
        signHmac({ alg: 'HS512', kid: jwk['kid'] }, secrets[0]!, 'sha512'),
        await forge({ key: attacker.rsa.privateKey }),
        tampered({ scope: ADMIN_SCOPE }),
        tampered({ sub: randomUUID() }),
        tampered({ exp: now() + 86_400 }),
      ];
    },
  },
  {
    id: 'A3',
    what: 'a kid that is unknown, 10 KB long, a path or SQL, with no error leaked',
    // No leak: every target asserts the exact generic body and challenge (nothing of the kid can be
    // echoed), and expectNoSideEffects that nothing was logged as an error (no stack).
    forge: async () => [
      // Each with the genuine signature (only the kid is wrong) and with the attacker's.
      ...(await Promise.all(
        ['no-such-key', 'attacker', '../../dev/null', '../../etc/passwd', "' OR 1=1--", `${genuineKey().kid}' OR '1'='1`, '$(id)', '', 42, null].flatMap(
          (kid) => [forge({ header: { kid } }), forge({ header: { kid }, key: attacker.rsa.privateKey })],
        ),
      )),
      await forge({ header: { kid: undefined }, key: attacker.rsa.privateKey }),
      // jwt_tool's kid injections: a file the server might read as the key, a query it might run.
      signHmac({ alg: 'HS256', kid: '../../../../../../dev/null' }, ''),
      signHmac({ alg: 'HS256', kid: "x' UNION SELECT 'attacker-secret'--" }, 'attacker-secret'),
      { token: await forge({ header: { kid: 'k'.repeat(10_240) } }), reason: 'too-long' },
    ],
  },
  {
    id: 'A4',
    what: "jku or x5u naming the attacker's listener, which serves the attacker's key",
    // x5u should name a certificate: it does not matter what the listener serves, as no one may ask.
    forge: async () => {
      const key = attacker.rsa.privateKey;
      return Promise.all([
        forge({ header: { jku: `${listenerUrl}/jwks.json` }, key }),
        forge({ header: { jku: `${listenerUrl}/jwks.json`, kid: 'attacker' }, key }),
        forge({ header: { jku: `${listenerUrl}/jwks.json`, kid: undefined }, key }),
        forge({ header: { x5u: `${listenerUrl}/cert.pem` }, key }),
        forge({ header: { x5u: `${listenerUrl}/cert.pem`, kid: 'attacker' }, key }),
      ]);
    },
  },
  {
    id: 'A5',
    what: "an embedded jwk header carrying the attacker's key",
    forge: async () => {
      const jwk = await exportJWK(attacker.rsa.publicKey);
      const key = attacker.rsa.privateKey;
      return Promise.all([
        forge({ header: { jwk }, key }),
        forge({ header: { jwk, kid: undefined }, key }),
        forge({ header: { jwk: { ...jwk, kid: 'attacker' }, kid: 'attacker' }, key }),
      ]);
    },
  },
  {
    id: 'A6',
    what: 'any algorithm but RS256, with the genuine key or a fresh one',
    forge: async () => [
      ...(await Promise.all(['RS384', 'RS512', 'PS256', 'PS384', 'PS512'].map((alg) => forge({ header: { alg } })))),
      await forge({ header: { alg: 'ES256' }, key: attacker.ec.privateKey }),
      await forge({ header: { alg: 'EdDSA' }, key: attacker.ed.privateKey }),
      // An RS256 signature by the genuine key, under an alg that only looks like RS256, or none at all.
      signRaw({ alg: 'rs256' }),
      signRaw({ alg: 'RS256 ' }),
      signRaw({ alg: undefined }),
    ],
  },
  {
    id: 'A7',
    what: 'expired, nbf or iat in the future beyond the skew, exp or another required claim missing',
    forge: async () => [
      { token: await forge({ claims: { iat: now() - 3_600, exp: now() - 2_700 } }), reason: 'expired' },
      { token: await forge({ claims: { iat: now() - 960, exp: now() - 60 } }), reason: 'expired' },
      await forge({ claims: { nbf: now() + 60 } }),
      await forge({ claims: { iat: now() + 3_600, exp: now() + 4_500 } }),
      await forge({ claims: { iat: now() + 60 } }),
      ...(await Promise.all(['exp', 'iat', 'sub', 'jti', 'client_id'].map((claim) => forge({ claims: { [claim]: undefined } })))),
    ],
  },
  {
    id: 'A8',
    what: 'iss variants (trailing slash, https, case, host), an aud of another service, a wrong or missing aud',
    forge: async (target) => {
      const { host, port } = new URL(issuer);
      const issuers = [`${issuer}/`, `https://${host}`, issuer.toUpperCase(), `http://localhost:${port}`, `${issuer}.evil.example`, 'https://evil.example', undefined];
      // Tessera wants its ISSUER in aud, the downstream API its own name; a token meant for the one is no good at the other.
      const elsewhere = target.foreignAudience();
      const audiences = [
        elsewhere,
        [elsewhere, 'billing-api'],
        'billing-api',
        [`${issuer}/`, `${AUDIENCE}/`],
        [issuer.toUpperCase(), AUDIENCE.toUpperCase()],
        [],
        undefined,
      ];
      return Promise.all([...issuers.map((iss) => forge({ claims: { iss } })), ...audiences.map((aud) => forge({ claims: { aud } }))]);
    },
  },
  {
    id: 'A9',
    what: 'typ JWT, or any typ but at+jwt',
    forge: async () =>
      Promise.all(['JWT', 'jwt', 'JOSE', 'application/jwt', 'id_token+jwt', 'dpop+jwt', undefined].map((typ) => forge({ header: { typ } }))),
  },
  {
    id: 'A10',
    what: 'an unknown or empty crit, a wrong number of segments, a 9 KB or a 1 MB token',
    forge: async () => {
      const { token, header, payload } = await genuineParts();
      return [
        signRaw({ crit: ['x-tessera-test'], 'x-tessera-test': 1 }),
        signRaw({ crit: [] }),
        'garbage',
        '...',
        'eyJhbGciOiJSUzI1NiJ9.e30.',
        'a.b',
        'a.b.c',
        `${header}.${payload}`,
        `${token}.${payload}`,
        `${token}..`,
        { token: await forge({ claims: { padding: 'x'.repeat(9_000) } }), reason: 'too-long' },
        { token: `${header}.${b64url({ ...decodeJwt(token), padding: 'x'.repeat(1024 * 1024) })}.${token.split('.')[2]}`, reason: 'huge' },
      ];
    },
  },
];

// --- the targets ---------------------------------------------------------------------------

interface Target {
  readonly name: string;
  /** An audience that Tessera issues tokens for, but not the one this target accepts. */
  foreignAudience(): string;
  accepts(token: string): Promise<void>;
  rejects(token: string, reason: Reason): Promise<void>;
}

/** RFC 6750 §3.1: 401, invalid_token in the challenge and the body, never cached. */
function expectInvalidToken(res: request.Response, realm: string, description: string): void {
  expect(res.status).toBe(401);
  expect(res.body).toEqual({ error: 'invalid_token', error_description: description });
  expect(res.headers['www-authenticate']).toBe(`Bearer realm="${realm}", error="invalid_token", error_description="${description}"`);
  expect(res.headers['cache-control']).toBe('no-store');
}

/**
 * A request whose header may be refused by Node's HTTP parser: its response, or 'reset' when the
 * server closed the connection while the client was still sending (Node 24 does, for a 1 MB header).
 */
function sent(req: request.Test): Promise<request.Response | 'reset'> {
  return req.then(
    (res) => res,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return 'reset' as const;
      throw error;
    },
  );
}

/**
 * Node's HTTP parser refuses a header over 16 KiB before any application code: a clean 431 with no
 * body and the connection closed, or (the client still sending) the connection closed at once.
 */
function expectHeaderTooLarge(res: request.Response | 'reset'): void {
  if (res === 'reset') return;
  expect(res.status).toBe(431);
  expect(res.text).toBe('');
  expect(res.headers['connection']).toBe('close');
}

/** Tessera's own endpoints (src/tokens/access-token.ts) name the reason. */
const TESSERA_SAYS = { invalid: NOT_VALID, expired: EXPIRED, 'too-long': TOO_LONG } as const;
/** @tessera-auth/verify says only whether it expired. */
const VERIFIER_SAYS = { invalid: NOT_VALID, expired: EXPIRED, 'too-long': NOT_VALID } as const;

function expectRefusedByTessera(res: request.Response | 'reset', reason: Reason): void {
  if (reason === 'huge') return expectHeaderTooLarge(res);
  expect(res).not.toBe('reset');
  if (res === 'reset') return;
  expectInvalidToken(res, 'tessera', TESSERA_SAYS[reason]);
  expect(res.headers['pragma']).toBe('no-cache');
}

const bearer = (req: request.Test, token: string) => req.set('Authorization', `Bearer ${token}`);

const userExists = async (username: string) =>
  (await service.deps.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst()) !== undefined;

const passwordHash = async () =>
  (await service.deps.db.selectFrom('users').select('password_hash').where('id', '=', admin.id).executeTakeFirstOrThrow()).password_hash;

/**
 * Puts the admin's password back, and the sessions a change ended (so that a change, wanted or
 * not, spoils no later test: the forged tokens name one of them); returns the hash it found.
 */
async function restorePasswordHash(hash: string): Promise<string> {
  const found = await passwordHash();
  if (found !== hash) {
    await service.deps.db.updateTable('users').set({ password_hash: hash }).where('id', '=', admin.id).execute();
    await service.deps.db
      .updateTable('refresh_families')
      .set({ revoked_at: null, revoked_reason: null })
      .where('user_id', '=', admin.id)
      .where('revoked_reason', '=', 'password_changed')
      .execute();
  }
  return found;
}

const changePassword = (token: string) =>
  bearer(request(service.app).post('/users/me/password'), token).send({ current_password: admin.password, new_password: `new-${randomBytes(12).toString('base64url')}` });

const TESSERA_TARGETS: readonly Target[] = [
  {
    name: 'GET /userinfo and GET /users/me',
    foreignAudience: () => AUDIENCE,
    async accepts(token) {
      for (const path of USER_PATHS) {
        const res = await bearer(request(service.app).get(path), token);
        expect(res.status).toBe(200);
        expect(res.body.sub).toBe(admin.id);
      }
    },
    async rejects(token, reason) {
      for (const path of USER_PATHS) expectRefusedByTessera(await sent(bearer(request(service.app).get(path), token)), reason);
    },
  },
  {
    name: 'POST /introspect, the token introspected',
    foreignAudience: () => AUDIENCE,
    async accepts(token) {
      const res = await request(service.app).post('/introspect').type('form').set('Authorization', gateway.basic).send({ token });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ active: true, sub: admin.id, client_id: gateway.id });
    },
    async rejects(token, reason) {
      const res = await request(service.app).post('/introspect').type('form').set('Authorization', gateway.basic).send({ token });
      expect(res.headers['cache-control']).toBe('no-store');
      if (reason === 'huge') {
        expect(res.status).toBe(413);
        expect(res.body).toEqual({ error: 'invalid_request', error_description: 'the request body is too large' });
        return;
      }
      // RFC 7662 §2.2: exactly {"active": false}, whatever the reason.
      expect(res.status).toBe(200);
      expect(res.text).toBe(INACTIVE);
    },
  },
  {
    name: 'the admin API',
    foreignAudience: () => AUDIENCE,
    async accepts(token) {
      const username = uniqueName('made');
      const created = await bearer(request(service.app).post('/admin/users'), token).send({ username });
      expect(created.status).toBe(201);
      expect(await userExists(username)).toBe(true);
      expect((await bearer(request(service.app).get('/admin/users'), token)).status).toBe(200);
    },
    async rejects(token, reason) {
      const username = uniqueName('forged');
      expectRefusedByTessera(await sent(bearer(request(service.app).post('/admin/users'), token).send({ username })), reason);
      expect(await userExists(username)).toBe(false);
      expectRefusedByTessera(await sent(bearer(request(service.app).get('/admin/users'), token)), reason);
    },
  },
  {
    name: 'POST /users/me/password',
    foreignAudience: () => AUDIENCE,
    async accepts(token) {
      const before = await passwordHash();
      const res = await changePassword(token);
      const after = await restorePasswordHash(before);
      expect(res.status).toBe(204);
      expect(after).not.toBe(before);
    },
    async rejects(token, reason) {
      const before = await passwordHash();
      const res = await sent(changePassword(token));
      const after = await restorePasswordHash(before);
      expectRefusedByTessera(res, reason);
      expect(after).toBe(before);
    },
  },
];

const VERIFIER_TARGET: Target = {
  name: '@tessera-auth/verify on a downstream API',
  foreignAudience: () => issuer,
  async accepts(token) {
    const res = await bearer(request(downstream).get('/reports'), token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ sub: admin.id });
  },
  async rejects(token, reason) {
    const res = await sent(bearer(request(downstream).get('/reports'), token));
    if (reason === 'huge') return expectHeaderTooLarge(res);
    expect(res).not.toBe('reset');
    if (res !== 'reset') expectInvalidToken(res, AUDIENCE, VERIFIER_SAYS[reason]);
  },
};

const TARGETS: readonly Target[] = [...TESSERA_TARGETS, VERIFIER_TARGET];

/** What no forged token may cause anywhere: a log line about an error (a stack), or a fetch from the listener. */
function expectNoSideEffects(logLinesBefore: number): void {
  const logged = service.logs.entries().slice(logLinesBefore);
  expect(logged.filter((entry) => entry['level'] === 'error' || entry['level'] === 'fatal' || entry['err'] !== undefined)).toEqual([]);
  expect(listenerHits).toBe(0);
}

describe.each(TARGETS.map((target) => [target.name, target] as const))('%s', (_name, target) => {
  it('A1-A10 control: a genuine token, and tokens forged exactly like one, are accepted', async () => {
    for (const token of [await genuineToken(), await forge(), signRaw(), await forge({ claims: { nbf: now() } })]) {
      await target.accepts(token);
    }
  });

  for (const { id, what, forge: forgeCase } of CASES) {
    it(`${id} ${what}: rejected`, async () => {
      const logLinesBefore = service.logs.lines.length;
      const forgeries = await forgeCase(target);
      expect(forgeries.length).toBeGreaterThan(0);
      for (const forgery of forgeries) {
        const { token, reason } = typeof forgery === 'string' ? { token: forgery, reason: 'invalid' as const } : forgery;
        await target.rejects(token, reason);
      }
      expectNoSideEffects(logLinesBefore);
    });
  }
});

/*
 * Every target takes keys by kid only (src/tokens/access-token.ts, packages/verify/src/key-set.ts): even
 * Tessera's own signature without a kid is refused. (jose's key set alone would pick a key by
 * alg when there is no kid; the verifier refuses before asking it.)
 */
describe('every target', () => {
  it.each(TARGETS.map((target) => [target.name, target] as const))('A3 %s: a kid-less token, even with the genuine signature, is rejected', async (_name, target) => {
    await target.rejects(await forge({ header: { kid: undefined } }), 'invalid');
  });
});

describe('every target, once more', () => {
  it('A4 no target fetches what jku or x5u name, not even after answering: the listener, reachable, hears nothing', async () => {
    // The listener does answer whoever asks: one request of the test's own, counted and then taken back.
    expect((await fetch(`${listenerUrl}/jwks.json`)).status).toBe(200);
    expect(listenerHits).toBe(1);
    listenerHits = 0;
    const a4 = CASES.find((entry) => entry.id === 'A4')!;
    for (const target of TARGETS) {
      for (const forgery of await a4.forge(target)) await target.rejects(typeof forgery === 'string' ? forgery : forgery.token, 'invalid');
    }
    // A fetch started by a rejection, even one left running after the answer, arrives within this.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(listenerHits).toBe(0);
  });

  // Tessera's /introspect authenticates its caller with client credentials (RFC 7662 §2.1), never
  // with a bearer token, so forged tokens have no second way in there: even a genuine one is refused.
  it('A1-A10 do not apply to the caller of /introspect: even a genuine access token as Bearer is 401 invalid_client', async () => {
    const token = await genuineToken();
    const res = await bearer(request(service.app).post('/introspect').type('form'), token).send({ token });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: 'the Authorization header is not valid Basic credentials' });
    expect(res.headers['www-authenticate']).toBe('Basic realm="tessera", charset="UTF-8"');
  });
});

// --- A11: the published keys ---------------------------------------------------------------

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

async function expectSafeJwks(): Promise<Array<Record<string, unknown>>> {
  const res = await request(service.app).get('/.well-known/jwks.json');
  expect(res.status).toBe(200);
  const keys = (res.body as { keys: Array<Record<string, unknown>> }).keys;
  for (const jwk of keys) {
    for (const member of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(member);
    expect(jwk).toMatchObject({ kty: 'RSA', use: 'sig', alg: 'RS256', kid: expect.stringMatching(/./) });
    expect(createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(2048);
    // Nothing in it would make a private key.
    expect(() => createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' })).toThrow();
  }
  const kids = keys.map((jwk) => jwk['kid']);
  expect(new Set(kids).size).toBe(kids.length);
  return keys;
}

describe('GET /.well-known/jwks.json', () => {
  it('A11 holds only public RSA signing keys of 2048 bits or more, each with kid, use and alg, kids unique; and after a rotation publishes the next key', async () => {
    const before = await expectSafeJwks();
    expect(before.map((jwk) => jwk['kid'])).toEqual([genuineKey().kid]);

    const rotated = await bearer(request(service.app).post('/admin/keys/rotate'), await genuineToken()).send({});
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ state: 'next', kid: expect.any(String) });

    const after = await expectSafeJwks();
    expect(after.map((jwk) => jwk['kid'])).toEqual([genuineKey().kid, rotated.body.kid]);
  });
});
