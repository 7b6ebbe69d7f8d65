import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, type RunningServer } from '../../src/service.js';
import { signRawJwt } from '../helpers/forge.js';
import { createTestClient, createTestUser, type TestClient, useTestService } from '../helpers/service.js';

// ATTACKS.md section E: what a hostile client does with HTTP itself (methods, content types, repeated
// parameters, client-authentication headers, sizes, encodings, slowness) and what every answer looks like.

const testService = useTestService();
const service = () => testService.current();

type User = Awaited<ReturnType<typeof createTestUser>>;
type Params = Record<string, string>;
interface Tokens {
  readonly access_token: string;
  readonly refresh_token: string;
}

/** Confidential, allowed the password and refresh grants (the gateway of DESIGN.md). */
let client: TestClient;
let user: User;

beforeAll(async () => {
  client = await createTestClient(service());
  user = await createTestUser(service(), { scopes: ['profile'] });
});

const FORM_ONLY = 'the request body must be application/x-www-form-urlencoded';
const FORM_OR_JSON = 'the request body must be application/x-www-form-urlencoded or application/json';
const IN_THE_URL = 'parameters must be sent in the request body, not the URL';
const TWO_METHODS = 'use only one client authentication method';
const NOT_BASIC = 'the Authorization header is not valid Basic credentials';
const TOO_LARGE = 'the request body is too large';
const TOO_MANY = 'the request has too many parameters';
const ENCODED = 'the request body encoding is not supported';
const BASIC_CHALLENGE = 'Basic realm="tessera", charset="UTF-8"';
const JSON_UTF8 = 'application/json; charset=utf-8';

/** The exact error answer: status, the whole body, and the RFC 6749 §5.1 no-cache headers. */
function expectError(res: request.Response, status: number, error: string, description: string): void {
  expect({ status: res.status, body: res.body }).toEqual({ status, body: { error, error_description: description } });
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
  expect(res.headers['content-type']).toBe(JSON_UTF8);
}

const passwordForm = (who: User = user): Params => ({ grant_type: 'password', username: who.username, password: who.password });
/** A form POST, with `client`'s Basic credentials unless told otherwise (null: no Authorization header). */
const postForm = (path: string, body: Params | string, auth: string | null = client.basic) => {
  const req = request(service().app).post(path).type('form');
  return (auth === null ? req : req.set('Authorization', auth)).send(body);
};

/** A user signed in through `client`: one refresh family. */
async function signedIn(): Promise<{ user: User; tokens: Tokens }> {
  const who = await createTestUser(service(), { scopes: ['profile'] });
  const res = await postForm('/token', passwordForm(who));
  expect(res.status).toBe(200);
  return { user: who, tokens: res.body as Tokens };
}

/**
 * A user's sessions as the database and the audit log see them. A refused request must leave them as
 * they were: no login (no new family, no login_succeeded), no rotation, no revocation.
 */
async function sessionsOf(userId: string) {
  const families = await service()
    .deps.db.selectFrom('refresh_families')
    .select(['id', 'generation', 'revoked_at', 'last_used_at'])
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
  const logins = service().logs.entries('login_succeeded').filter((entry) => entry['user_id'] === userId).length;
  return { families, logins };
}

async function leavesNoTrace(userId: string, send: () => PromiseLike<request.Response>): Promise<request.Response> {
  const before = await sessionsOf(userId);
  const res = await send();
  expect(await sessionsOf(userId)).toEqual(before);
  return res;
}

/** The four endpoints that take client credentials and a form, each with a body that would succeed. */
const CLIENT_ENDPOINTS = [
  ['/token', (who: User) => passwordForm(who)],
  ['/refresh', (_who: User, tokens: Tokens) => ({ refresh_token: tokens.refresh_token })],
  ['/revoke', (_who: User, tokens: Tokens) => ({ token: tokens.refresh_token })],
  ['/introspect', (_who: User, tokens: Tokens) => ({ token: tokens.refresh_token })],
] as const;

describe('E1 methods other than POST', () => {
  it.each(CLIENT_ENDPOINTS.flatMap(([path]) => (['get', 'put', 'delete', 'patch', 'options'] as const).map((method) => [method, path] as const)))(
    'E1 %s %s is 405 with Allow: POST and an RFC-style JSON body',
    async (method, path) => {
      const res = await request(service().app)[method](path).set('Authorization', client.basic);
      expectError(res, 405, 'invalid_request', 'this endpoint accepts POST only');
      expect(res.headers['allow']).toBe('POST');
    },
  );

  it('E1 a GET carrying a whole password grant in its URL, or a PUT carrying it in a form, issues nothing', async () => {
    const who = await createTestUser(service());
    const query = new URLSearchParams(passwordForm(who)).toString();
    const get = await leavesNoTrace(who.id, () => request(service().app).get(`/token?${query}`).set('Authorization', client.basic));
    expectError(get, 405, 'invalid_request', 'this endpoint accepts POST only');
    const put = await leavesNoTrace(who.id, () => request(service().app).put('/token').type('form').set('Authorization', client.basic).send(query));
    expectError(put, 405, 'invalid_request', 'this endpoint accepts POST only');
  });
});

const multipart = (fields: Params) =>
  `${Object.entries(fields)
    .map(([name, value]) => `--x\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`)
    .join('')}--x--\r\n`;

/** Bodies that carry the right parameters in the wrong media type; `undefined`: no Content-Type at all. */
const WRONG_TYPES: readonly (readonly [string, string | undefined, (fields: Params) => string])[] = [
  ['JSON', 'application/json', (fields) => JSON.stringify(fields)],
  ['text/plain', 'text/plain', (fields) => new URLSearchParams(fields).toString()],
  ['multipart', 'multipart/form-data; boundary=x', multipart],
  ['no content type', undefined, (fields) => new URLSearchParams(fields).toString()],
];

function sendTyped(path: string, contentType: string | undefined, body: string) {
  const req = request(service().app).post(path).set('Authorization', client.basic);
  // A Buffer makes supertest send the bytes with no Content-Type of its own.
  return contentType === undefined ? req.send(Buffer.from(body)) : req.set('Content-Type', contentType).send(body);
}

describe('E2 content types and parameters in the URL', () => {
  it.each(WRONG_TYPES)('E2 a %s body at /token is invalid_request, and the credentials in it are not used', async (_name, type, encode) => {
    const who = await createTestUser(service());
    const res = await leavesNoTrace(who.id, () => sendTyped('/token', type, encode(passwordForm(who))));
    expectError(res, 400, 'invalid_request', FORM_ONLY);
  });

  it('E2 a body with no content type and no content at /token is invalid_request', async () => {
    expectError(await request(service().app).post('/token').set('Authorization', client.basic), 400, 'invalid_request', FORM_ONLY);
  });

  it.each(['application/x-www-form-urlencoded', 'application/json'])('E2 /refresh takes %s (DESIGN.md, HTTP surface)', async (type) => {
    const { tokens } = await signedIn();
    const body = { refresh_token: tokens.refresh_token };
    const res = await sendTyped('/refresh', type, type === 'application/json' ? JSON.stringify(body) : new URLSearchParams(body).toString());
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).not.toBe(tokens.refresh_token);
  });

  it.each(WRONG_TYPES.filter(([name]) => name !== 'JSON'))('E2 a %s body at /refresh is invalid_request, and the token is not consumed', async (_name, type, encode) => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => sendTyped('/refresh', type, encode({ refresh_token: tokens.refresh_token })));
    expectError(res, 400, 'invalid_request', FORM_OR_JSON);
  });

  it.each(['/revoke', '/introspect'])('E2 a JSON body at %s is invalid_request, and the token is untouched', async (path) => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => sendTyped(path, 'application/json', JSON.stringify({ token: tokens.refresh_token })));
    expectError(res, 400, 'invalid_request', FORM_ONLY);
  });

  it.each([
    ['the whole password grant', '/token', (who: User) => [passwordForm(who), {}] as const],
    ['the password', '/token', (who: User) => [{ password: who.password }, { grant_type: 'password', username: who.username }] as const],
    ['client_id and client_secret', '/token', (who: User) => [{ client_id: client.id, client_secret: client.secret! }, passwordForm(who)] as const],
    ['the refresh token', '/refresh', (_who: User, tokens: Tokens) => [{ refresh_token: tokens.refresh_token }, {}] as const],
    ['the token to revoke', '/revoke', (_who: User, tokens: Tokens) => [{ token: tokens.refresh_token }, {}] as const],
    ['the token to introspect', '/introspect', (_who: User, tokens: Tokens) => [{ token: tokens.refresh_token }, {}] as const],
  ])('E2 %s in the query string of %s is invalid_request, and is not used', async (_name, path, split) => {
    const { user: who, tokens } = await signedIn();
    const [query, body] = split(who, tokens);
    // With the client's secret in the URL there is no Basic header: the URL alone would authenticate it.
    const basic = 'client_secret' in query ? null : client.basic;
    const res = await leavesNoTrace(who.id, () => postForm(`${path}?${new URLSearchParams(query).toString()}`, body, basic));
    expectError(res, 400, 'invalid_request', IN_THE_URL);
    const logs = service().logs.lines.join('\n');
    for (const secret of [who.password, tokens.refresh_token, client.secret!]) expect(logs).not.toContain(secret);
  });
});

describe('E3 repeated parameters', () => {
  // The repeat carries the same value, so a parser that kept the first or the last would succeed.
  it.each(['grant_type', 'username', 'password', 'scope', 'client_id', 'client_secret'])(
    'E3 a repeated %s at /token is invalid_request, and nothing is issued',
    async (name) => {
      const who = await createTestUser(service(), { scopes: ['profile'] });
      const body = new URLSearchParams({ ...passwordForm(who), scope: 'profile', client_id: client.id, client_secret: client.secret! });
      body.append(name, body.get(name)!);
      const res = await leavesNoTrace(who.id, () => postForm('/token', body.toString(), null));
      expectError(res, 400, 'invalid_request', `the parameter ${name} is repeated`);
    },
  );

  it.each(['/refresh', '/revoke', '/introspect'])('E3 a repeated token at %s is invalid_request, and the token is untouched', async (path) => {
    const { user: who, tokens } = await signedIn();
    const name = path === '/refresh' ? 'refresh_token' : 'token';
    const body = `${name}=${tokens.refresh_token}&${name}=${tokens.refresh_token}`;
    const res = await leavesNoTrace(who.id, () => postForm(path, body));
    expectError(res, 400, 'invalid_request', `the parameter ${name} is repeated`);
  });

  it('E3 a repeated member of a JSON body at /refresh is invalid_request, and the token is not consumed', async () => {
    const { user: who, tokens } = await signedIn();
    const json = `{"refresh_token":"${tokens.refresh_token}","refresh_token":"${tokens.refresh_token}"}`;
    const res = await leavesNoTrace(who.id, () => sendTyped('/refresh', 'application/json', json));
    expectError(res, 400, 'invalid_request', 'a parameter is repeated');
  });
});

describe('E4 two client authentication methods at once (RFC 6749 §2.3)', () => {
  it.each(CLIENT_ENDPOINTS)('E4 Basic and client_secret in the body at %s is invalid_request, even with the right secret in both', async (path, body) => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => postForm(path, { ...body(who, tokens), client_id: client.id, client_secret: client.secret! }));
    expectError(res, 400, 'invalid_request', TWO_METHODS);
  });

  it('E4 a body client_id that differs from the Basic one is invalid_request', async () => {
    const other = await createTestClient(service());
    const who = await createTestUser(service());
    const res = await leavesNoTrace(who.id, () => postForm('/token', { ...passwordForm(who), client_id: other.id }));
    expectError(res, 400, 'invalid_request', 'client_id does not match the Authorization header');
  });

  it('E4 Basic with the same client_id in the body is one method, and authenticates', async () => {
    const who = await createTestUser(service(), { scopes: ['profile'] });
    const res = await postForm('/token', { ...passwordForm(who), client_id: client.id });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).client_id).toBe(client.id);
  });
});

describe('E5 malformed Basic credentials', () => {
  const base64 = (text: string) => Buffer.from(text).toString('base64');
  const expectInvalidClient = (res: request.Response, description: string) => {
    expectError(res, 401, 'invalid_client', description);
    expect(res.headers['www-authenticate']).toBe(BASIC_CHALLENGE);
  };

  it.each([
    ['not base64', () => 'Basic !!!', NOT_BASIC],
    ['no colon', () => `Basic ${base64('no-colon-in-here')}`, NOT_BASIC],
    ['an empty id', () => `Basic ${base64(`:${client.secret}`)}`, NOT_BASIC],
    ['an empty secret', () => `Basic ${base64(`${client.id}:`)}`, 'client authentication failed'],
    ['bad percent-encoding', () => `Basic ${base64('%zz:%zz')}`, NOT_BASIC],
    ['another scheme', () => `Bearer ${base64(`${client.id}:${client.secret}`)}`, NOT_BASIC],
    ['a scheme that ends in Basic', () => `XBasic ${base64(`${client.id}:${client.secret}`)}`, NOT_BASIC],
    ['the scheme glued to the credentials', () => `Basic${base64(`${client.id}:${client.secret}`)}`, NOT_BASIC],
    ['a second token after the credentials', () => `${client.basic} extra`, NOT_BASIC],
    ['the scheme alone', () => 'Basic', NOT_BASIC],
    ['an empty header', () => '', NOT_BASIC],
  ])('E5 %s is 401 invalid_client with a Basic challenge, and nothing is issued', async (_name, header, description) => {
    const who = await createTestUser(service());
    const res = await leavesNoTrace(who.id, () => postForm('/token', passwordForm(who), header()));
    expectInvalidClient(res, description);
  });

  it.each(CLIENT_ENDPOINTS.slice(1))('E5 a malformed Basic header at %s is 401 invalid_client with a Basic challenge', async (path, body) => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => postForm(path, body(who, tokens), `Basic ${base64('no-colon-in-here')}`));
    expectInvalidClient(res, NOT_BASIC);
  });

  it('E5 the scheme name is case-insensitive (RFC 9110 §11.1), so basic and BASIC are not malformed', async () => {
    const credentials = client.basic.slice('Basic '.length);
    for (const scheme of ['basic', 'BASIC']) expect((await postForm('/token', passwordForm(), `${scheme} ${credentials}`)).status).toBe(200);
  });
});

describe('E5 well-formed Basic credentials of unusual shape', () => {
  const login = async (basic: string) => {
    const who = await createTestUser(service(), { scopes: ['profile'] });
    return postForm('/token', passwordForm(who), basic);
  };

  it('E5 a client id of one character authenticates with Basic', async () => {
    const one = await createTestClient(service(), { id: 'q' });
    const res = await login(one.basic);
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).client_id).toBe('q');
  });

  it('E5 a secret with spaces, form-encoded with + as RFC 6749 App. B says, authenticates; + taken literally does not', async () => {
    // Tessera's own secrets never need encoding, but a secret set in the database by other means may.
    const spaced = await createTestClient(service(), { secret: 'a secret with spaces in it, chosen by hand' });
    const formEncoded = `Basic ${Buffer.from(`${spaced.id}:${new URLSearchParams({ s: spaced.secret! }).toString().slice(2)}`).toString('base64')}`;
    expect(formEncoded).not.toBe(spaced.basic); // + for each space, not %20
    const res = await login(formEncoded);
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).client_id).toBe(spaced.id);
    const plus = await createTestClient(service(), { secret: 'a+secret+with+plus+signs+chosen+by+hand' });
    const literal = `Basic ${Buffer.from(`${plus.id}:${plus.secret}`).toString('base64')}`;
    const refused = await login(literal);
    expectError(refused, 401, 'invalid_client', 'client authentication failed');
    expect((await login(plus.basic)).status).toBe(200);
  });
});

describe('E5 credentials that must never authenticate', () => {
  const INVALID_CLIENT = 'client authentication failed';
  const expectRefused = async (send: (who: User) => PromiseLike<request.Response>, description = INVALID_CLIENT) => {
    const who = await createTestUser(service(), { scopes: ['profile'] });
    const res = await leavesNoTrace(who.id, () => send(who));
    expectError(res, 401, 'invalid_client', description);
    expect(res.headers['www-authenticate']).toBe(BASIC_CHALLENGE);
  };
  /** Basic credentials as given: the id and secret already form-encoded. */
  const basicRaw = (id: string, encodedSecret: string) => `Basic ${Buffer.from(`${id}:${encodedSecret}`).toString('base64')}`;

  it('E5 a client_id alone that names no client (the public-client form) is invalid_client', async () => {
    await expectRefused((who) => postForm('/token', { ...passwordForm(who), client_id: 'no-such-client' }, null));
  });

  it('E5 an empty client_id and nothing else is no client authentication at all (RFC 6749 §3.1)', async () => {
    await expectRefused((who) => postForm('/token', { ...passwordForm(who), client_id: '' }, null), 'client authentication is required');
  });

  it('E5 the hash compared for an unknown client, so that both paths cost the same, lets no one in', async () => {
    // The dummy's secret is '\0unknown-client' (src/oauth/client-auth.ts): presented by name, it still opens nothing.
    await expectRefused((who) => postForm('/token', passwordForm(who), basicRaw('no-such-client', '%00unknown-client')));
  });

  it('E5 a client whose stored secret is empty (set by hand in the database) cannot authenticate with an empty secret', async () => {
    const hollow = await createTestClient(service(), { secret: '' });
    await expectRefused((who) => postForm('/token', passwordForm(who), basicRaw(hollow.id, '')));
  });

  it.each([
    ['before', (id: string) => `%00${id}`],
    ['after', (id: string) => `${id}%00`],
  ])('E5 a NUL %s a Basic client id is invalid_client, never a database error', async (_where, withNul) => {
    await expectRefused((who) => postForm('/token', passwordForm(who), basicRaw(withNul(client.id), client.secret!)));
  });
});

describe('E6 sizes, parameter counts and compressed bodies', () => {
  // 16 KiB is the limit (src/http/form.ts); the padding makes an otherwise good request 17 KiB.
  const padding = 'x'.repeat(17 * 1024);

  it.each(CLIENT_ENDPOINTS)('E6 a form over the size limit at %s is 413 with a JSON error, and is not acted on', async (path, body) => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => postForm(path, { ...body(who, tokens), padding }));
    expectError(res, 413, 'invalid_request', TOO_LARGE);
  });

  it('E6 a JSON body over the size limit at /refresh is 413, and the token is not consumed', async () => {
    const { user: who, tokens } = await signedIn();
    const res = await leavesNoTrace(who.id, () => request(service().app).post('/refresh').set('Authorization', client.basic).send({ refresh_token: tokens.refresh_token, padding }));
    expectError(res, 413, 'invalid_request', TOO_LARGE);
  });

  it.each(CLIENT_ENDPOINTS)('E6 a form with too many parameters at %s is refused with 413, and is not acted on', async (path, body) => {
    const { user: who, tokens } = await signedIn();
    const extra = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, 'x']));
    const res = await leavesNoTrace(who.id, () => postForm(path, { ...body(who, tokens), ...extra }));
    expectError(res, 413, 'invalid_request', TOO_MANY);
  });

  // 10 MiB of zeros is about 10 KiB gzipped: under the size limit, so only refusing the encoding stops it.
  const bomb = Buffer.alloc(10 * 1024 * 1024);
  it.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ] as const)('E6 a %s body (a 10 MiB bomb, or a good request) is 415, never inflated', async (encoding, compress) => {
    const { user: who, tokens } = await signedIn();
    const send = (path: string, type: string, body: Buffer) =>
      leavesNoTrace(who.id, () =>
        request(service().app).post(path).set('Authorization', client.basic).set('Content-Type', type).set('Content-Encoding', encoding).send(body),
      );
    const compressedBomb = compress(bomb);
    expect(compressedBomb.length).toBeLessThan(16 * 1024);
    for (const path of ['/token', '/refresh', '/revoke']) {
      expectError(await send(path, 'application/x-www-form-urlencoded', compressedBomb), 415, 'invalid_request', ENCODED);
    }
    expectError(await send('/refresh', 'application/json', compress(Buffer.from(JSON.stringify({ refresh_token: tokens.refresh_token })))), 415, 'invalid_request', ENCODED);
    expectError(await send('/token', 'application/x-www-form-urlencoded', compress(Buffer.from(new URLSearchParams(passwordForm(who)).toString()))), 415, 'invalid_request', ENCODED);
  });
});

describe('E7 slow clients', () => {
  // A real listening server (src/service.ts listen()), on loopback. Its timeouts are constants
  // (headersTimeout 10 s, requestTimeout 30 s) that no configuration lowers for a test, so the slow
  // body (30 s) is proved by the configured value alone, and slow headers by a real socket that drips
  // a header line a second and never ends them: it must be cut off within headersTimeout plus slack.
  let running: RunningServer;
  beforeAll(async () => {
    const deps = service().deps;
    running = await listen(
      // Port 0; the file's own service keeps its rate limits (and their Redis connection) open.
      { ...deps, config: { ...deps.config, port: 0, host: '127.0.0.1' }, limits: { ...deps.limits, close: async () => undefined } },
      async () => undefined,
    );
  });
  afterAll(async () => {
    await running?.close();
  });

  it('E7 the listening server is configured to end slow headers within 10 s and a slow body within 30 s', () => {
    // Node's defaults, which a service that sets nothing keeps: headersTimeout 60 s, requestTimeout 300 s.
    const { headersTimeout, requestTimeout, keepAliveTimeout } = running.server;
    expect(headersTimeout).toBeGreaterThan(0);
    expect(headersTimeout).toBeLessThanOrEqual(10_000);
    expect(requestTimeout).toBeGreaterThanOrEqual(headersTimeout);
    expect(requestTimeout).toBeLessThanOrEqual(30_000);
    // An idle keep-alive connection is not held open either.
    expect(keepAliveTimeout).toBeGreaterThan(0);
    expect(keepAliveTimeout).toBeLessThanOrEqual(headersTimeout);
  });

  // Node enforces headersTimeout only when it sweeps its connections, every connectionsCheckingInterval
  // (30 s unless createServer is told otherwise): the sweep must be frequent for 10 s to mean 10 s.
  const SLACK_MS = 3_000;
  it('E7 a client that drips its headers and never ends them is cut off within headersTimeout', { timeout: 40_000 }, async () => {
    const { port } = running.server.address() as AddressInfo;
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const started = Date.now();
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined); // a reset is a close too
    socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\n`);
    const drip = setInterval(() => socket.writable && socket.write('X-Drip: 1\r\n'), 1_000);
    const deadline = running.server.headersTimeout + SLACK_MS;
    const closed = await Promise.race([once(socket, 'close').then(() => true), delay(deadline).then(() => false)]);
    clearInterval(drip);
    socket.destroy();
    expect({ closed, withinDeadline: Date.now() - started <= deadline }).toEqual({ closed: true, withinDeadline: true });
    // Node answers 408 before closing (or just closes): never a response to a request it did not finish reading.
    expect(received === '' || received.startsWith('HTTP/1.1 408 ')).toBe(true);
  });
});

/** RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1; RFC 7662 adds none. */
const RFC_ERROR_CODES = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'access_denied',
  'unsupported_response_type',
  'server_error',
  'temporarily_unavailable',
  'invalid_token',
  'insufficient_scope',
  'unsupported_token_type',
];

/** [name, status, send]; an error probe names the code it must get, proof that it reached its branch. */
type Send = () => PromiseLike<request.Response>;
type SuccessProbe = readonly [name: string, status: number, send: Send];
type ErrorProbe = readonly [name: string, status: number, error: string, send: Send];

/** Fixtures of the probes, made once. */
let machine: TestClient;
let publicClient: TestClient;
let adminToken: string;
let userToken: string;
beforeAll(async () => {
  machine = await createTestClient(service(), { grantTypes: ['client_credentials'], scopes: ['orders:read'] });
  publicClient = await createTestClient(service(), { type: 'public' });
  const adminClient = await createTestClient(service(), { scopes: ['profile', 'admin'] });
  const admin = await createTestUser(service(), { scopes: ['admin'] });
  adminToken = (await postForm('/token', { ...passwordForm(admin), scope: 'admin' }, adminClient.basic)).body.access_token;
  userToken = (await postForm('/token', passwordForm())).body.access_token;
});

const app = () => request(service().app);
const withBearer = (method: 'get' | 'post', path: string, token: string) => app()[method](path).set('Authorization', `Bearer ${token}`);
const asAdmin = (method: 'get' | 'post', path: string) => withBearer(method, path, adminToken);
const asUser = (method: 'get' | 'post', path: string) => withBearer(method, path, userToken);
const login = (extra: Params = {}, auth?: string | null) => postForm('/token', { ...passwordForm(), ...extra }, auth);
const refreshJson = (body: object | string) => app().post('/refresh').set('Authorization', client.basic).type('json').send(body);
const freshSession = async () => (await signedIn()).tokens;

/** Distinct strings, so that one sent as a secret (a refresh token) is not later logged as a path. */
const HOSTILE = {
  sql: "' OR 1=1--",
  union: "' UNION SELECT token_hash FROM refresh_tokens--",
  path: '../../../etc/passwd',
  drop: "x'; DROP TABLE clients;--",
} as const;

/** A token signed by a stranger, with a path for its kid. */
const foreignKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const forgedWithPathKid = () => signRawJwt({ alg: 'RS256', typ: 'at+jwt', kid: HOSTILE.path }, { sub: user.id, exp: 4e9 }, foreignKey);
const basicOf = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${secret}`).toString('base64')}`;

const SUCCESSES: readonly SuccessProbe[] = [
  ['POST /token, password grant', 200, () => login()],
  ['POST /token, client_credentials', 200, () => postForm('/token', { grant_type: 'client_credentials' }, machine.basic)],
  ['POST /token, refresh_token', 200, async () => postForm('/token', { grant_type: 'refresh_token', refresh_token: (await freshSession()).refresh_token })],
  ['POST /refresh, JSON', 200, async () => refreshJson({ refresh_token: (await freshSession()).refresh_token })],
  ['POST /revoke', 200, async () => postForm('/revoke', { token: (await freshSession()).refresh_token })],
  ['POST /introspect', 200, async () => postForm('/introspect', { token: (await freshSession()).access_token })],
  ['GET /userinfo', 200, () => asUser('get', '/userinfo')],
  ['GET /users/me', 200, () => asUser('get', '/users/me')],
  [
    'POST /users/me/password',
    204,
    async () => {
      const { user: who, tokens } = await signedIn();
      return withBearer('post', '/users/me/password', tokens.access_token).send({ current_password: who.password, new_password: 'a brand new passphrase' });
    },
  ],
  ['GET /healthz', 200, () => app().get('/healthz')],
  ['GET /readyz', 200, () => app().get('/readyz')],
  ['GET /admin/users', 200, () => asAdmin('get', '/admin/users')],
];

const ERRORS: readonly ErrorProbe[] = [
  ['POST /token, wrong password', 400, 'invalid_grant', () => login({ password: 'not the password' })],
  ['POST /token, no client authentication', 401, 'invalid_client', () => login({}, null)],
  ['POST /token, unknown grant_type', 400, 'unsupported_grant_type', () => postForm('/token', { grant_type: 'urn:x:nothing' })],
  ['POST /token, a grant the client may not use', 400, 'unauthorized_client', () => login({}, machine.basic)],
  ['POST /token, a scope not allowed', 400, 'invalid_scope', () => login({ scope: 'admin' })],
  ['POST /token, a malformed scope', 400, 'invalid_scope', () => login({ scope: 'pro"file' })],
  ['POST /token, JSON', 400, 'invalid_request', () => app().post('/token').set('Authorization', client.basic).send(passwordForm())],
  ['GET /token', 405, 'invalid_request', () => app().get('/token')],
  ['POST /token, over the size limit', 413, 'invalid_request', () => login({ padding: 'x'.repeat(17_000) })],
  ['POST /token, gzip', 415, 'invalid_request', () => app().post('/token').type('form').set('Content-Encoding', 'gzip').send(gzipSync('grant_type=password'))],
  ['POST /token, SQL in the username', 400, 'invalid_grant', () => login({ username: HOSTILE.sql })],
  ['POST /token, SQL in the Basic client id', 401, 'invalid_client', () => login({}, basicOf(HOSTILE.drop, 'x'))],
  ['POST /token, a path as client_id', 401, 'invalid_client', () => login({ client_id: HOSTILE.path, client_secret: 'x' }, null)],
  ['POST /token, SQL in the scope', 400, 'invalid_scope', () => login({ scope: HOSTILE.sql })],
  ['POST /token, a repeated parameter named with a quote, a backslash, non-ASCII', 400, 'invalid_request', () => postForm('/token', 'n%22%5C%C3%A9=1&n%22%5C%C3%A9=2')],
  ['POST /token, invalid UTF-8 in a value', 400, 'invalid_grant', () => postForm('/token', 'grant_type=password&username=%FF%FE&password=x')],
  ['POST /refresh, SQL as the refresh token', 400, 'invalid_grant', () => postForm('/refresh', { refresh_token: HOSTILE.union })],
  ['POST /refresh, a 10 KB refresh token', 400, 'invalid_grant', () => postForm('/refresh', { refresh_token: 'A'.repeat(10_000) })],
  ['POST /refresh, a NUL in a refresh token', 400, 'invalid_grant', () => postForm('/refresh', { refresh_token: `${'A'.repeat(42)}\0` })],
  ['POST /refresh, malformed JSON', 400, 'invalid_request', () => refreshJson('{"refresh_token":')],
  ['POST /refresh, another grant_type', 400, 'unsupported_grant_type', () => postForm('/refresh', { grant_type: 'password', refresh_token: 'x' })],
  ['POST /revoke, no token', 400, 'invalid_request', () => postForm('/revoke', {})],
  ['POST /introspect, a public client', 401, 'invalid_client', () => postForm('/introspect', { token: 'x', client_id: publicClient.id }, null)],
  ['GET /userinfo, no token', 401, 'invalid_token', () => app().get('/userinfo')],
  ['GET /userinfo, a forged token with a path as kid', 401, 'invalid_token', () => withBearer('get', '/userinfo', forgedWithPathKid())],
  ['GET /userinfo, SQL as the token', 401, 'invalid_token', () => withBearer('get', '/userinfo', HOSTILE.sql)],
  ['POST /users/me/password, wrong current password', 400, 'invalid_request', () => asUser('post', '/users/me/password').send({ current_password: 'wrong one', new_password: 'another fine passphrase' })],
  ['GET /admin/users, a token without admin', 403, 'insufficient_scope', () => asUser('get', '/admin/users')],
  ['POST /admin/users, a form body', 415, 'invalid_request', () => asAdmin('post', '/admin/users').type('form').send({ username: 'x' })],
  ['GET /admin/users/<SQL>', 404, 'invalid_request', () => asAdmin('get', `/admin/users/${encodeURIComponent(HOSTILE.sql)}`)],
  ['GET /admin/roles/<bad percent-encoding>', 400, 'invalid_request', () => asAdmin('get', '/admin/roles/%E0%A4%A')],
  ['GET /admin/users, a non-ASCII query parameter', 400, 'invalid_request', () => asAdmin('get', '/admin/users?%C3%A9%22=1')],
  ['POST /admin/users, scopes with a quote, a backslash, non-ASCII', 400, 'invalid_request', () => asAdmin('post', '/admin/users').send({ username: 'scoped-e9', scopes: ['pro"file', 'pr\\ofile', 'prófile'] })],
  ['POST /admin/users, an unknown field with a quote in its name', 400, 'invalid_request', () => asAdmin('post', '/admin/users').send({ username: 'x', 'sc"opés': [] })],
  ['POST /admin/roles, a role name with a path and SQL', 400, 'invalid_request', () => asAdmin('post', '/admin/roles').send({ name: `${HOSTILE.path}${HOSTILE.drop}` })],
  ['POST /.well-known/jwks.json', 405, 'invalid_request', () => app().post('/.well-known/jwks.json')],
  ['GET /nope', 404, 'invalid_request', () => app().get('/nope')],
  ['POST /register while registration is closed', 404, 'invalid_request', () => app().post('/register').send({ username: 'x', password: 'y' })],
];

describe('E8 the headers of every answer', () => {
  const ALL: readonly SuccessProbe[] = [...SUCCESSES, ...ERRORS.map(([name, status, , send]) => [name, status, send] as const)];
  it.each(ALL)('E8 %s: no-store, JSON with charset, no X-Powered-By', async (_name, status, send) => {
    const res = await send();
    expect(res.status).toBe(status);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
    expect(res.headers['x-powered-by']).toBeUndefined();
    // A body, when there is one, is JSON in UTF-8; /revoke's 200 and a 204 have none.
    const empty = res.status === 204 || res.headers['content-length'] === '0';
    expect(res.headers['content-type']).toBe(empty ? undefined : JSON_UTF8);
    if (empty) expect(res.text).toBe('');
  });

  it('E8 the public documents are cacheable on purpose, and carry no X-Powered-By either', async () => {
    // RFC 7517 / RFC 8414 documents hold no secret and are meant for caches (DESIGN.md: the JWKS has
    // Cache-Control max-age and an ETag); /metrics is Prometheus text. Their errors are in the probes.
    const expected = {
      '/.well-known/jwks.json': [`public, max-age=${service().config.jwksMaxAge}`, JSON_UTF8],
      '/.well-known/oauth-authorization-server': ['public, max-age=3600', JSON_UTF8],
      '/.well-known/openid-configuration': ['public, max-age=3600', JSON_UTF8],
      '/openapi.yaml': ['public, max-age=3600', 'application/yaml; charset=utf-8'],
    };
    for (const [path, [cacheControl, type]] of Object.entries(expected)) {
      const res = await app().get(path);
      expect({ path, status: res.status, cacheControl: res.headers['cache-control'], type: res.headers['content-type'], poweredBy: res.headers['x-powered-by'] }).toEqual({
        path,
        status: 200,
        cacheControl,
        type,
        poweredBy: undefined,
      });
    }
    const metrics = await app().get('/metrics');
    expect(metrics.headers['cache-control']).toBe('no-store');
    expect(metrics.headers['x-powered-by']).toBeUndefined();
  });
});

describe('E9 error codes and descriptions', () => {
  /** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (printable ASCII but `"` and `\`). */
  const DESCRIPTION = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/;
  /** What internals look like: SQL, file paths, stack frames, exception names. */
  const INTERNALS = /\b(SELECT|INSERT|UPDATE|DELETE FROM|WHERE|DROP)\b|sqlstate|syntax error|violates|relation "|\/src\/|node_modules|\.[jt]s:\d|\bat \S+ \(|[A-Z][a-z]+Error\b|Unexpected (end|token)/;

  it.each(ERRORS)('E9 %s: an RFC error code, a plain ASCII description without internals', async (_name, status, error, send) => {
    const res = await send();
    expect(res.status).toBe(status);
    expect(Object.keys(res.body).sort()).toEqual(['error', 'error_description']);
    expect(res.body.error).toBe(error);
    expect(RFC_ERROR_CODES).toContain(res.body.error);
    const description = res.body.error_description as string;
    expect(description).toMatch(DESCRIPTION);
    expect(description).not.toMatch(INTERNALS);
    for (const input of Object.values(HOSTILE)) expect(description).not.toContain(input);
  });
});
