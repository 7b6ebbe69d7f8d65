import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import request from 'supertest';
import { describe, expect, it, onTestFinished } from 'vitest';
import { setAccountDisabled } from '../../src/auth/accounts.js';
import { generateClientSecret, isSendableSecret } from '../../src/auth/client-secrets.js';
import type { PasswordHasher } from '../../src/auth/passwords.js';
import { runCli } from '../../src/cli/run.js';
import { type Env, loadConfig } from '../../src/config.js';
import type { Clock } from '../../src/clock.js';
import { createFakeClock } from '../helpers/clock.js';
import { proxyForThisTest, throughProxy } from '../helpers/database-proxy.js';
import { watchLogOutput } from '../helpers/logs.js';
import { noteSecret } from '../helpers/secrets.js';
import {
  basicAuth,
  countingHasher,
  createTestClient,
  createTestUser,
  passwordGrant,
  testEnv,
  type TestClient,
  type TestService,
  uniqueName,
  useServicesPerTest,
} from '../helpers/service.js';

/**
 * ATTACKS.md section I, the part about the limits themselves: the brute-force and client layers
 * must never become a way to lock someone else out (I1), must count every guess at a password
 * (I4), and a client must be able to send the secret it was given (I8); a gateway is not throttled
 * by a default meant for something else (the per-client limit). Every test starts its own
 * service on the file's database with a Redis prefix of its own and the limits it needs.
 */

const services = useServicesPerTest('i');
const database = () => services.database();

/** A service for the running test, behind a trusted proxy so that each request can come from an address of its own. */
const serviceWith = (env: Env, passwords?: PasswordHasher) => services.forTest({ TRUST_PROXY: 'loopback', ...env }, { passwords });

/** `tessera <argv>` in-process, on the file's database, as another host would run it against the same PostgreSQL. */
async function cli(argv: readonly string[], { stdin, clock = createFakeClock() }: { stdin?: string; clock?: Clock } = {}) {
  let stdout = '';
  let stderr = '';
  watchLogOutput(`tessera ${argv.join(' ')}`, () => stderr);
  noteSecret('stdin of a tessera command', stdin?.trim());
  const env = { DATABASE_URL: database().url, KEY_ENCRYPTION_KEYS: services.kek };
  const readStdin = async () => stdin ?? fail(`tessera ${argv.join(' ')} read stdin unasked`);
  const code = await runCli(argv, env, { readStdin, stdout: (text) => void (stdout += text), stderr: (text) => void (stderr += text) }, clock);
  return { code, stdout, stderr };
}

const TOO_MANY = { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' };
const WRONG = { error: 'invalid_grant', error_description: 'the username or password is incorrect' };
const INVALID_CLIENT = { error: 'invalid_client', error_description: 'client authentication failed' };

/** A password-grant request from `from` (what the trusted proxy appended to X-Forwarded-For). */
const login = (service: TestService, client: { readonly basic: string }, username: string, password: string, from: string, extra: Record<string, string> = {}) =>
  passwordGrant(service.app, client, { username, password }, extra).set('X-Forwarded-For', from);

/** A client nobody registered, with a secret nobody issued. */
const invented = () => ({ basic: basicAuth(uniqueName('invented-'), 'x'.repeat(43)) });

let addresses = 0;
/** A client address no other request of the file used. */
const freshIp = () => `198.18.${(++addresses >> 8) & 255}.${addresses & 255}`;

function tally(responses: readonly request.Response[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const res of responses) counts[res.status] = (counts[res.status] ?? 0) + 1;
  return counts;
}

const trips = (service: TestService, layer: string) => service.logs.entries('rate_limit_tripped').filter((entry) => entry['layer'] === layer);

describe('I1 floods that are not failed logins never count against an account', () => {
  it('I1 three bursts of concurrent logins with an invented client, from twenty addresses: every one invalid_client, the owner then logs in from a new address', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '20', LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '5' }, hasher);
    const gateway = await createTestClient(service);
    const owner = await createTestUser(service);
    const sources = Array.from({ length: 20 }, freshIp);
    for (let burst = 0; burst < 3; burst++) {
      const sent = await Promise.all(Array.from({ length: 100 }, (_, i) => login(service, invented(), owner.username, `guess-${burst}-${i}`, sources[i % 20]!)));
      expect(tally(sent)).toEqual({ 401: 100 });
      for (const res of sent) expect(res.body).toEqual(INVALID_CLIENT);
    }
    expect(hasher.verifies).toBe(0); // not one password was checked

    const res = await login(service, gateway, owner.username, owner.password, freshIp());
    expect(res.status).toBe(200);
    expect(res.body.access_token).toEqual(expect.any(String));
    expect(service.logs.entries('rate_limit_tripped')).toEqual([]);
  });

  it('I1 invalid_request, invalid_scope, unsupported_grant_type, unauthorized_client and invalid_client never count, however many arrive at once', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '3', LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '2' }, hasher);
    const gateway = await createTestClient(service);
    const machine = await createTestClient(service, { grantTypes: ['client_credentials'] });
    const wrongSecret = { basic: basicAuth(gateway.id, 'not-the-secret') };
    const owner = await createTestUser(service);
    const from = freshIp(); // one source: the per-IP-and-account layer is tested too
    const bursts: [number, (i: number) => request.Test][] = [
      [400, () => login(service, gateway, owner.username, ' ', from)],
      [400, (i) => login(service, gateway, owner.username, `guess-${i}`, from, { scope: 'bad"scope' })],
      [400, (i) => login(service, gateway, owner.username, `guess-${i}`, from, { grant_type: 'urn:example:unknown' })],
      [400, (i) => login(service, machine, owner.username, `guess-${i}`, from)],
      [401, (i) => login(service, wrongSecret, owner.username, `guess-${i}`, from)],
      [401, (i) => login(service, invented(), owner.username, `guess-${i}`, from)],
    ];
    for (const [status, send] of bursts) {
      const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => send(i).set('X-Forwarded-For', from)));
      expect(tally(sent)).toEqual({ [status]: 30 });
    }
    expect(hasher.verifies).toBe(0);
    expect((await login(service, gateway, owner.username, owner.password, from)).status).toBe(200);
  });

  it('I1 a request the account layers refuse never counts, nor does a disabled user\'s right password: a burst at one failure short of the limit leaves it one short', async () => {
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '5' });
    const gateway = await createTestClient(service);
    const owner = await createTestUser(service);
    for (let i = 0; i < 4; i++) expect((await login(service, gateway, owner.username, `guess-${i}`, freshIp())).body).toEqual(WRONG);

    await setAccountDisabled(service.deps.db, owner.id, true, new Date(service.clock.now()));
    const sent = await Promise.all(Array.from({ length: 30 }, () => login(service, gateway, owner.username, owner.password, freshIp())));
    // Verified one or a few at a time (a disabled user's right password answers like a wrong one, ATTACKS.md C2);
    // the others are refused while those are in flight, told to come back in a second.
    expect(sent.filter((res) => res.status !== 400 && res.status !== 429)).toEqual([]);
    for (const res of sent) expect(res.body).toEqual(res.status === 400 ? WRONG : TOO_MANY);
    for (const res of sent.filter((r) => r.status === 429)) expect(res.headers['retry-after']).toBe('1');

    // None of that counted, nor cleared anything: the account is still exactly one failure short of its limit.
    await setAccountDisabled(service.deps.db, owner.id, false, new Date(service.clock.now()));
    expect(trips(service, 'login_account')).toEqual([]);
    expect((await login(service, gateway, owner.username, 'guess-5', freshIp())).body).toEqual(WRONG);
    expect(trips(service, 'login_account')).toHaveLength(1);
    expect((await login(service, gateway, owner.username, owner.password, freshIp())).body).toEqual(TOO_MANY);
  });

  // While Redis answers and every verification ends within 30 s (the life of a slot), the bound is exact:
  // no more wrong passwords are verified per window than the limit. Without Redis, per process.
  it.each([
    { backend: 'redis', env: {} },
    { backend: 'memory', env: { REDIS_URL: undefined } },
  ])('I1 a burst of concurrent wrong guesses at the limit\'s edge verifies no more than the limit ($backend)', async ({ env }) => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '10', ...env }, hasher);
    const gateway = await createTestClient(service);
    const owner = await createTestUser(service);
    for (let i = 0; i < 7; i++) expect((await login(service, gateway, owner.username, `guess-${i}`, freshIp())).status).toBe(400);

    const burst = await Promise.all(Array.from({ length: 60 }, (_, i) => login(service, gateway, owner.username, `burst-${i}`, freshIp())));
    const counts = tally(burst);
    expect((counts[400] ?? 0) + (counts[429] ?? 0)).toBe(60);
    expect(counts[400] ?? 0).toBeLessThanOrEqual(3);
    expect(hasher.verifies).toBe(7 + (counts[400] ?? 0));
    // However the burst went, the account locks at exactly ten verified wrong passwords, never more.
    let last: request.Response | undefined;
    for (let i = 0; i < 10 && last?.status !== 429; i++) last = await login(service, gateway, owner.username, `after-${i}`, freshIp());
    expect(hasher.verifies).toBe(10);
    expect(last!.body).toEqual(TOO_MANY);
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(3500);
    expect(last!.headers['ratelimit-policy']).toMatch(/^"login_ip"; q=\d+; w=60; pk=:[^:]+:$/); // the account layers never speak
    // The owner's right password from a new address is refused unverified; the lock is audited once.
    expect((await login(service, gateway, owner.username, owner.password, freshIp())).status).toBe(429);
    expect(hasher.verifies).toBe(10);
    expect(trips(service, 'login_account')).toEqual([expect.objectContaining({ layer: 'login_account', account: expect.any(String) })]);
  });

  it('I1 one source bursting at one account verifies no more than the per-IP-and-account limit', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '4' }, hasher);
    const gateway = await createTestClient(service);
    const owner = await createTestUser(service);
    const from = freshIp();
    const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => login(service, gateway, owner.username, `burst-${i}`, from)));
    expect(tally(burst)[400] ?? 0).toBeLessThanOrEqual(4);
    expect(hasher.verifies).toBe(tally(burst)[400] ?? 0);
    // The owner from elsewhere is not affected.
    expect((await login(service, gateway, owner.username, owner.password, freshIp())).status).toBe(200);
  });
});

describe('I4 guesses at the current password', () => {
  /** A user, a gateway, and an access token of the user's session. */
  async function session(service: TestService) {
    const gateway = await createTestClient(service);
    const user = await createTestUser(service);
    const token = (await login(service, gateway, user.username, user.password, freshIp())).body.access_token as string;
    return { gateway, user, token };
  }
  const changePassword = (service: TestService, token: string, current: string, from: string, next = `new-${randomBytes(9).toString('base64url')}`) => {
    noteSecret('new password (I4)', next);
    return request(service.app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${token}`)
      .set('X-Forwarded-For', from)
      .send({ current_password: current, new_password: next });
  };
  const INCORRECT = { error: 'invalid_request', error_description: 'the current password is incorrect' };

  it('I4 wrong current passwords from five addresses count as failed logins: each address is stopped after its share, as at /token', async () => {
    const hasher = countingHasher();
    const service = await serviceWith({ LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '3' }, hasher);
    const { gateway, user, token } = await session(service);
    const sources = Array.from({ length: 5 }, freshIp);
    const before = hasher.verifies;
    for (const from of sources) {
      const sent = [];
      for (let i = 0; i < 5; i++) sent.push(await changePassword(service, token, `guess-${i}`, from));
      expect(sent.map((res) => res.status)).toEqual([400, 400, 400, 429, 429]);
      expect(sent[2]!.body).toEqual(INCORRECT);
      expect(sent[3]!.body).toEqual(TOO_MANY);
      expect(Number(sent[3]!.headers['retry-after'])).toBeGreaterThan(890);
    }
    expect(hasher.verifies - before).toBe(15);
    // The same counters as the password grant: the account is limited there too, from those addresses.
    expect((await login(service, gateway, user.username, user.password, sources[0]!)).status).toBe(429);
    // The right password from such an address is refused unverified.
    expect((await changePassword(service, token, user.password, sources[1]!)).status).toBe(429);
    expect(hasher.verifies - before).toBe(15);
  });

  it('I4 guesses from many addresses meet the account layer, the password grant\'s right password included; a right one clears the count', async () => {
    const service = await serviceWith({ LOGIN_ACCOUNT_FAILURE_LIMIT: '4' });
    const { gateway, user, token } = await session(service);
    for (let i = 0; i < 3; i++) expect((await changePassword(service, token, `guess-${i}`, freshIp())).body).toEqual(INCORRECT);
    // A right current password clears the count (NIST SP 800-63B: consecutive failures).
    const home = freshIp();
    const next = `next-${randomBytes(9).toString('base64url')}`;
    expect((await changePassword(service, token, user.password, home, next)).status).toBe(204);
    const fresh = (await login(service, gateway, user.username, next, freshIp())).body.access_token as string;
    for (let i = 0; i < 4; i++) expect((await changePassword(service, fresh, `guess-${i}`, freshIp())).body).toEqual(INCORRECT);
    const limited = await changePassword(service, fresh, next, freshIp());
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual(TOO_MANY);
    expect((await login(service, gateway, user.username, next, freshIp())).status).toBe(429);
    expect(trips(service, 'login_account')).toHaveLength(1);
    // The source that proved the password is known to the account, as after a login, and exempt from the account layer.
    expect((await login(service, gateway, user.username, next, home)).status).toBe(200);
  });
});

describe('I8 client secrets every client sends alike', () => {
  const SENDABLE = 'error: a client secret may hold only letters, digits and - . _ ~ (RFC 3986 unreserved characters), which every client sends alike in a Basic header\n';

  it.each([
    ['a percent sign', `${'a'.repeat(35)}%41bcd`],
    ['a plus sign', `${'a'.repeat(35)}+bcdef`],
    ['a colon', `${'a'.repeat(35)}:bcdef`],
    ['a space', `${'a'.repeat(35)} bcdef`],
    ['a non-ASCII letter', `${'a'.repeat(35)}ébcdef`],
  ])('I8 a supplied secret with %s is refused at creation and rotation, and not echoed', async (_what, secret) => {
    const id = uniqueName('i8-');
    const created = await cli(['clients', 'create', '--id', id, '--secret-stdin'], { stdin: `${secret}\n` });
    expect(created).toEqual({ code: 1, stdout: '', stderr: SENDABLE });
    expect(await database().db.selectFrom('clients').select('id').where('id', '=', id).executeTakeFirst()).toBeUndefined();

    const good = randomBytes(30).toString('base64url');
    expect((await cli(['clients', 'create', '--id', id, '--secret-stdin'], { stdin: `${good}\n` })).code).toBe(0);
    const before = await database().db.selectFrom('clients').select('secret_hash').where('id', '=', id).executeTakeFirstOrThrow();
    expect(await cli(['clients', 'rotate-secret', id, '--secret-stdin'], { stdin: `${secret}\n` })).toEqual({ code: 1, stdout: '', stderr: SENDABLE });
    expect(await database().db.selectFrom('clients').select('secret_hash').where('id', '=', id).executeTakeFirstOrThrow()).toEqual(before);
  });

  it('I8 a secret of unreserved characters works whether the client form-encodes it in the Basic header or not', async () => {
    const service = await serviceWith({});
    const secret = `${randomBytes(24).toString('base64url')}~.-_x`;
    const id = uniqueName('i8-');
    expect((await cli(['clients', 'create', '--id', id, '--secret-stdin'], { stdin: `${secret}\n` })).code).toBe(0);
    const user = await createTestUser(service);
    const raw = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`; // requests' HTTPBasicAuth, curl -u
    const encoded = `Basic ${Buffer.from(`${id}:${new URLSearchParams({ s: secret }).toString().slice(2)}`).toString('base64')}`; // RFC 6749 App. B
    expect(encoded).not.toBe(raw); // `~` is form-encoded as %7E
    for (const basic of [raw, encoded]) expect((await login(service, { basic }, user.username, user.password, freshIp())).status).toBe(200);
  });

  it('I8 generated secrets already qualify: 43 unreserved characters', async () => {
    for (let i = 0; i < 1000; i++) {
      const secret = generateClientSecret();
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(isSendableSecret(secret)).toBe(true);
    }
    const created = await cli(['clients', 'create', '--id', uniqueName('i8-'), '--json']);
    expect(JSON.parse(created.stdout).client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('the per-client limit', () => {
  const revoke = (to: TestService | Server, client: { readonly basic: string }, from: string) =>
    request('app' in to ? to.app : to).post('/revoke').type('form').set('Authorization', client.basic).set('X-Forwarded-For', from).send({ token: 'not-a-token' });

  it('is off by default: one gateway, one address, more requests in a minute than the old default of 6,000 allowed', async () => {
    expect(loadConfig(testEnv(database(), { CLIENT_RATE_LIMIT: undefined })).rateLimits.client).toEqual({ limit: undefined, window: 60 });
    const service = await serviceWith({ CLIENT_RATE_LIMIT: undefined });
    const gateway = await createTestClient(service);
    const server = service.app.listen(0, '127.0.0.1');
    onTestFinished(() => void server.close());
    const from = freshIp();
    const statuses: Record<number, number> = {};
    const started = Date.now();
    // 6,050 revocations in 121 waves of 50, well inside one window.
    for (let wave = 0; wave < 121; wave++) {
      const sent = await Promise.all(Array.from({ length: 50 }, () => revoke(server, gateway, from)));
      for (const res of sent) statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(statuses).toEqual({ 200: 6050 });
  }, 90_000);

  it('is set per client through the admin API and the CLI, and takes effect at once', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: undefined });
    const adminClient = await createTestClient(service, { scopes: ['admin'] });
    const admin = await createTestUser(service, { scopes: ['admin'] });
    const adminToken = (await login(service, adminClient, admin.username, admin.password, freshIp(), { scope: 'admin' })).body.access_token as string;
    const gateway = await createTestClient(service);
    const patch = (rateLimit: number | null) =>
      request(service.app).patch(`/admin/clients/${gateway.id}`).set('Authorization', `Bearer ${adminToken}`).send({ rate_limit: rateLimit });
    const inTurn = async (count: number) => {
      const statuses = [];
      for (let i = 0; i < count; i++) statuses.push((await revoke(service, gateway, freshIp())).status);
      return statuses;
    };
    expect(await inTurn(5)).toEqual([200, 200, 200, 200, 200]);

    const patched = await patch(3);
    expect(patched.status).toBe(200);
    expect(patched.body.rate_limit).toBe(3);
    const limited = await inTurn(4);
    expect(limited).toEqual([200, 200, 200, 429]);
    const refused = await revoke(service, gateway, freshIp());
    expect(refused.body).toEqual(TOO_MANY);
    expect(refused.headers['ratelimit-policy']).toMatch(/^"client"; q=3; w=60; pk=:[^:]+:$/);
    expect(trips(service, 'client')).toEqual([expect.objectContaining({ client_id: gateway.id })]);

    expect((await patch(null)).body.rate_limit).toBeNull();
    expect(await inTurn(3)).toEqual([200, 200, 200]);

    // The CLI, as on another host against the same database: the service hears of each change from PostgreSQL.
    const clock = service.clock;
    expect(await cli(['clients', 'update', gateway.id, '--rate-limit', '2'], { clock })).toEqual({ code: 0, stdout: `client_id: ${gateway.id}\nrate_limit: 2\n`, stderr: expect.any(String) });
    await expect.poll(() => revoke(service, gateway, freshIp()).then((res) => res.status), { timeout: 5_000 }).toBe(429);
    expect((await cli(['clients', 'update', gateway.id, '--rate-limit', 'off'], { clock })).stdout).toBe(`client_id: ${gateway.id}\nrate_limit: off\n`);
    await expect.poll(() => revoke(service, gateway, freshIp()).then((res) => res.status), { timeout: 5_000 }).toBe(200);
    for (const bad of [['--rate-limit', 'fast'], ['--rate-limit', '0'], []]) {
      expect((await cli(['clients', 'update', gateway.id, ...bad], { clock })).code).toBe(2);
    }
    const created = uniqueName('limited-');
    expect((await cli(['clients', 'create', '--id', created, '--rate-limit', '7'], { clock })).code).toBe(0);
    expect((await request(service.app).get(`/admin/clients/${created}`).set('Authorization', `Bearer ${adminToken}`)).body.rate_limit).toBe(7);
  });

  it('CLIENT_RATE_LIMIT, when set, is the default for clients without a limit of their own', async () => {
    const service = await serviceWith({ CLIENT_RATE_LIMIT: '2' });
    const gateway = await createTestClient(service);
    const own = await createTestClient(service);
    await service.deps.db.updateTable('clients').set({ rate_limit: 4 }).where('id', '=', own.id).execute();
    const inTurn = async (client: TestClient, count: number) => {
      const statuses = [];
      for (let i = 0; i < count; i++) statuses.push((await revoke(service, client, freshIp())).status);
      return statuses;
    };
    expect(await inTurn(gateway, 3)).toEqual([200, 200, 429]);
    expect(await inTurn(own, 5)).toEqual([200, 200, 200, 200, 429]);
  });

  it('a flood of invented clients from one address is refused before it reaches the database; a client with valid credentials is never counted there', async () => {
    const proxy = await proxyForThisTest(database().url);
    const service = await services.forTest({ TRUST_PROXY: 'loopback', CLIENT_AUTH_FAILURE_LIMIT: '5' }, { database: throughProxy(database(), proxy) });
    const gateway = await createTestClient(service);
    const busy = freshIp();
    // A busy gateway from one address: 40 requests at once, none of them a failure, none counted.
    const burst = await Promise.all(Array.from({ length: 40 }, () => revoke(service, gateway, busy)));
    expect(tally(burst)).toEqual({ 200: 40 });

    const flood = freshIp();
    const sent = [];
    for (let i = 0; i < 6; i++) sent.push(await revoke(service, invented(), flood));
    expect(sent.map((res) => res.status)).toEqual([401, 401, 401, 401, 401, 429]);
    expect(sent[5]!.body).toEqual(TOO_MANY);
    expect(Number(sent[5]!.headers['retry-after'])).toBeGreaterThan(55);
    expect(sent[5]!.headers['ratelimit']).toBeUndefined(); // a failure layer is never announced
    expect(trips(service, 'client_auth')).toEqual([expect.objectContaining({ ip: flood })]);

    // With the database gone, the flooding address is still refused at once (a lookup would be a 503)...
    proxy.cut();
    for (const path of ['/revoke', '/introspect', '/refresh']) {
      const res = await request(service.app).post(path).type('form').set('Authorization', invented().basic).set('X-Forwarded-For', flood).send({ token: 'x', refresh_token: 'x' });
      expect(res.status).toBe(429);
    }
    const login = await passwordGrant(service.app, invented(), { username: 'nobody', password: 'x' }).set('X-Forwarded-For', flood);
    expect(login.status).toBe(429);
    // ...while another address's invented client does reach for the database.
    expect((await revoke(service, invented(), freshIp())).status).toBe(503);
    proxy.restore();
  });
});

function fail(message: string): never {
  throw new Error(message);
}
