import { generateKeyPair } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertSigningKey } from '../src/db/signing-keys.js';
import { createKeyRing } from '../src/keys/key-encryption.js';
import { generateSigningKey } from '../src/keys/key-store.js';
import { createFakeClock } from './helpers/clock.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import {
  createTestClient,
  createTestUser,
  startTestService,
  TEST_ISSUER,
  type TestService,
  testEnv,
  useTestService,
} from './helpers/service.js';

const JWKS_PATH = '/.well-known/jwks.json';
const DISCOVERY_PATHS = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'] as const;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const running = useTestService();
const service = (): TestService => running.current();

interface Jwk {
  readonly [member: string]: unknown;
}

function modulusBits(n: unknown): number {
  expect(typeof n).toBe('string');
  const bytes = Buffer.from(n as string, 'base64url');
  return BigInt(`0x${bytes.toString('hex')}`).toString(2).length;
}

/** RFC 7517 and ATTACKS.md A11: every key is a public RS256 signing key, 2048 bits or more. */
function expectPublicSigningKeys(keys: readonly Jwk[]): void {
  expect(keys.length).toBeGreaterThan(0);
  for (const key of keys) {
    expect(Object.keys(key).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(key).toMatchObject({ kty: 'RSA', use: 'sig', alg: 'RS256', e: 'AQAB' });
    expect(key['kid']).toEqual(expect.any(String));
    expect(key['kid']).not.toBe('');
    expect(modulusBits(key['n'])).toBeGreaterThanOrEqual(2048);
    for (const member of PRIVATE_MEMBERS) expect(key).not.toHaveProperty(member);
  }
  const kids = keys.map((key) => key['kid']);
  expect(new Set(kids).size).toBe(kids.length);
}

describe('GET /.well-known/jwks.json', () => {
  it('publishes only the public members of the signing key, cacheable, with an ETag', async () => {
    const res = await request(service().app).get(JWKS_PATH);

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect(res.headers['etag']).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(Object.keys(res.body)).toEqual(['keys']);
    const keys = res.body.keys as Jwk[];
    expectPublicSigningKeys(keys);
    expect(keys.map((key) => key['kid'])).toEqual([service().deps.keys.current().signing.kid]);
    for (const member of PRIVATE_MEMBERS) expect(res.text).not.toContain(`"${member}"`);
  });

  it('serves the same document and ETag on every request', async () => {
    const first = await request(service().app).get(JWKS_PATH);
    const second = await request(service().app).get(JWKS_PATH);
    expect(second.text).toBe(first.text);
    expect(second.headers['etag']).toBe(first.headers['etag']);
  });

  it('answers If-None-Match with the current ETag with 304 and an empty body', async () => {
    const { headers } = await request(service().app).get(JWKS_PATH);
    const etag = headers['etag'] as string;

    const res = await request(service().app).get(JWKS_PATH).set('If-None-Match', etag);
    expect(res.status).toBe(304);
    expect(res.text).toBe('');
    expect(res.headers['content-length']).toBeUndefined();
    // RFC 9110 §15.4.5: a 304 carries the validators and caching headers a 200 would.
    expect(res.headers['etag']).toBe(etag);
    expect(res.headers['cache-control']).toBe('public, max-age=300');
  });

  it('matches the ETag inside a list of entity tags', async () => {
    const { headers } = await request(service().app).get(JWKS_PATH);
    const res = await request(service().app)
      .get(JWKS_PATH)
      .set('If-None-Match', `"something-else", ${headers['etag'] as string}`);
    expect(res.status).toBe(304);
    expect(res.text).toBe('');
  });

  it('uses weak comparison for If-None-Match (RFC 9110 §13.1.2), as a proxy that weakened the ETag sends it', async () => {
    const { headers } = await request(service().app).get(JWKS_PATH);
    const res = await request(service().app)
      .get(JWKS_PATH)
      .set('If-None-Match', `W/${headers['etag'] as string}`);
    expect(res.status).toBe(304);
    expect(res.text).toBe('');
  });

  it('answers a stale ETag with the full document', async () => {
    const fresh = await request(service().app).get(JWKS_PATH);
    const res = await request(service().app).get(JWKS_PATH).set('If-None-Match', '"stale"');
    expect(res.status).toBe(200);
    expect(res.text).toBe(fresh.text);
    expect(res.headers['etag']).toBe(fresh.headers['etag']);
  });

  it('answers HEAD with the headers of GET', async () => {
    const res = await request(service().app).head(JWKS_PATH);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect(res.headers['etag']).toMatch(/^"[A-Za-z0-9_-]+"$/);
  });
});

describe('JWKS with several keys', () => {
  let keysDatabase: TestDatabase;
  let keysService: TestService;

  beforeAll(async () => {
    keysDatabase = await createTestDatabase();
    keysService = await startTestService(keysDatabase);
  });
  afterAll(async () => {
    await keysService?.close();
    await keysDatabase?.drop();
  });

  it('publishes next and retired keys too, never their private members, with a new ETag', async () => {
    const before = await request(keysService.app).get(JWKS_PATH);
    const activeKid = keysService.deps.keys.current().signing.kid;
    const ring = createKeyRing(keysService.config.keyEncryptionKeys ?? []);
    const now = new Date(keysService.clock.now());

    // A key waiting to sign (next).
    const next = await generateSigningKey(ring);
    await insertSigningKey(keysService.deps.db, {
      ...next,
      state: 'next',
      created_at: now,
      activated_at: null,
      retired_at: null,
    });

    // A retired key whose row, by some mistake, holds the whole private JWK: the JWKS must still show only public members.
    const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
    const privateJwk = privateKey.export({ format: 'jwk' });
    expect(privateJwk.d).toEqual(expect.any(String));
    const retiredKid = await calculateJwkThumbprint({ kty: 'RSA', n: privateJwk.n!, e: privateJwk.e! });
    const sealed = ring.encrypt(privateKey.export({ format: 'der', type: 'pkcs8' }), retiredKid);
    await insertSigningKey(keysService.deps.db, {
      kid: retiredKid,
      state: 'retired',
      algorithm: 'RS256',
      public_jwk: { ...privateJwk, kid: retiredKid, use: 'sig', alg: 'RS256' },
      private_key_ciphertext: sealed.ciphertext,
      kek_id: sealed.kekId,
      created_at: new Date(now.getTime() - 60_000),
      activated_at: new Date(now.getTime() - 60_000),
      retired_at: now,
    });
    await keysService.deps.keys.reload();

    const res = await request(keysService.app).get(JWKS_PATH);
    expect(res.status).toBe(200);
    const keys = res.body.keys as Jwk[];
    expectPublicSigningKeys(keys);
    // Active first: verifiers that take the first key pick the one in use.
    expect(keys[0]?.['kid']).toBe(activeKid);
    expect(keys.map((key) => key['kid']).sort()).toEqual([activeKid, next.kid, retiredKid].sort());
    expect(keys.find((key) => key['kid'] === retiredKid)).toEqual({
      kty: 'RSA',
      use: 'sig',
      alg: 'RS256',
      kid: retiredKid,
      n: privateJwk.n,
      e: privateJwk.e,
    });
    for (const member of PRIVATE_MEMBERS) expect(res.text).not.toContain(`"${member}"`);
    expect(res.text).not.toContain(privateJwk.d!);

    expect(res.headers['etag']).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(res.headers['etag']).not.toBe(before.headers['etag']);
    const stale = await request(keysService.app).get(JWKS_PATH).set('If-None-Match', before.headers['etag'] as string);
    expect(stale.status).toBe(200);
    expect(stale.text).toBe(res.text);
  });
});

describe.each(DISCOVERY_PATHS)('GET %s', (path) => {
  it('describes the service, with issuer exactly ISSUER', async () => {
    const res = await request(service().app).get(path);

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.body.issuer).toBe(TEST_ISSUER);
    expect(res.body.issuer).toBe(service().config.issuer);
    expect(res.body).toMatchObject({
      token_endpoint: `${TEST_ISSUER}/token`,
      jwks_uri: `${TEST_ISSUER}${JWKS_PATH}`,
      userinfo_endpoint: `${TEST_ISSUER}/userinfo`,
    });
    expect(res.body.grant_types_supported).toContain('password');
    for (const grant of res.body.grant_types_supported as unknown[]) {
      expect(['password', 'refresh_token', 'client_credentials', 'authorization_code']).toContain(grant);
    }
    expect(res.body.token_endpoint_auth_methods_supported).toEqual(
      expect.arrayContaining(['client_secret_basic', 'client_secret_post']),
    );
    // OpenID Connect Discovery 1.0 §3, RFC 8414 §2, RFC 9207 §3.
    expect(res.body).toMatchObject({
      authorization_endpoint: `${TEST_ISSUER}/authorize`,
      end_session_endpoint: `${TEST_ISSUER}/logout`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      scopes_supported: ['openid', 'profile', 'email'],
      claims_supported: expect.arrayContaining(['sub', 'iss', 'auth_time', 'nonce', 'sid', 'at_hash']),
    });
    expect(res.body.grant_types_supported).toContain('authorization_code');
  });

  it('is the same document at both well-known paths', async () => {
    const here = await request(service().app).get(path);
    const there = await Promise.all(DISCOVERY_PATHS.map((other) => request(service().app).get(other)));
    for (const other of there) expect(other.body).toEqual(here.body);
  });

  it('advertises only endpoints that this service serves', async () => {
    const { body } = await request(service().app).get(path);
    const pathOf = (url: string) => {
      expect(url.startsWith(`${TEST_ISSUER}/`)).toBe(true);
      return url.slice(TEST_ISSUER.length);
    };

    const jwks = await request(service().app).get(pathOf(body.jwks_uri));
    expect(jwks.status).toBe(200);
    expect(jwks.body).toEqual((await request(service().app).get(JWKS_PATH)).body);

    const token = await request(service().app).post(pathOf(body.token_endpoint)).type('form').send({ grant_type: 'password' });
    expect(token.status).toBe(401);
    expect(token.body).toEqual({ error: 'invalid_client', error_description: 'client authentication is required' });

    const userinfo = await request(service().app).get(pathOf(body.userinfo_endpoint));
    expect(userinfo.status).toBe(401);
    expect(userinfo.body).toEqual({ error: 'invalid_token', error_description: 'a bearer access token is required' });

    // Every URL in the document (endpoints, jwks_uri, service_documentation, any added later) is routed:
    // GET answers something other than 404 (a POST-only endpoint answers 405).
    const urls = Object.entries(body as Record<string, unknown>).filter(
      ([name, value]) => typeof value === 'string' && name !== 'issuer' && /^https?:\/\//.test(value),
    );
    expect(urls.map(([name]) => name)).toEqual(expect.arrayContaining(['token_endpoint', 'jwks_uri', 'userinfo_endpoint']));
    for (const [name, url] of urls) {
      const res = await request(service().app).get(pathOf(url as string));
      expect({ name, status: res.status }).not.toEqual({ name, status: 404 });
    }
  });
});

describe('methods other than GET and HEAD', () => {
  const cases = [JWKS_PATH, ...DISCOVERY_PATHS].flatMap((path) =>
    (['post', 'put', 'delete', 'patch'] as const).map((method) => [method, path] as const),
  );

  it.each(cases)('%s %s is 405 with Allow: GET, HEAD', async (method, path) => {
    const res = await request(service().app)[method](path).type('form').send({ keys: '[]' });
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('GET, HEAD');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this endpoint accepts GET, HEAD only' });
  });
});

describe('a downstream service verifies tokens from discovery and the JWKS alone', () => {
  let downstreamDatabase: TestDatabase;
  let downstream: TestService;
  let server: Server;
  let issuer: string;

  beforeAll(async () => {
    // Listen first (port 0 on loopback), so ISSUER can name the real port without a race for it.
    server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    issuer = `http://127.0.0.1:${port}`;
    downstreamDatabase = await createTestDatabase();
    // The verifier below runs on the real clock, so this service's clock starts at real time.
    downstream = await startTestService(downstreamDatabase, {
      env: testEnv(downstreamDatabase, { ISSUER: issuer, PORT: String(port) }),
      clock: createFakeClock(Date.now()),
    });
    server.on('request', downstream.app);
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await downstream?.close();
    await downstreamDatabase?.drop();
  });

  it('verifies a token from POST /token with createRemoteJWKSet and jwtVerify', async () => {
    const user = await createTestUser(downstream, { scopes: ['profile', 'orders:read'] });
    const client = await createTestClient(downstream);

    const discovery = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
    expect(discovery.status).toBe(200);
    const metadata = (await discovery.json()) as { issuer: string; token_endpoint: string; jwks_uri: string };
    expect(metadata.issuer).toBe(issuer);
    expect(metadata.jwks_uri).toBe(`${issuer}${JWKS_PATH}`);

    const tokenResponse = await fetch(metadata.token_endpoint, {
      method: 'POST',
      headers: { Authorization: client.basic, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: user.username,
        password: user.password,
        scope: 'orders:read',
      }),
    });
    expect(tokenResponse.status).toBe(200);
    const { access_token: accessToken } = (await tokenResponse.json()) as { access_token: string };

    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
    const { payload, protectedHeader } = await jwtVerify(accessToken, jwks, {
      issuer: metadata.issuer,
      audience: issuer,
      typ: 'at+jwt',
      algorithms: ['RS256'],
    });
    expect(protectedHeader).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: downstream.deps.keys.current().signing.kid });
    expect(payload).toMatchObject({ iss: issuer, aud: issuer, sub: user.id, client_id: client.id, scope: 'orders:read' });

    // The same verifier refuses a token from another Tessera (another issuer and key set).
    const otherUser = await createTestUser(service(), { scopes: ['profile'] });
    const otherClient = await createTestClient(service());
    const other = await request(service().app)
      .post('/token')
      .type('form')
      .set('Authorization', otherClient.basic)
      .send({ grant_type: 'password', username: otherUser.username, password: otherUser.password });
    expect(other.status).toBe(200);
    expect(decodeProtectedHeader(other.body.access_token).kid).not.toBe(protectedHeader.kid);
    const options = { issuer: metadata.issuer, audience: issuer, typ: 'at+jwt', algorithms: ['RS256'] };
    await expect(jwtVerify(other.body.access_token as string, jwks, options)).rejects.toThrow();
  });
});
