import { decodeJwt } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createPasswordHasher, type PasswordHasher } from '../../src/auth/passwords.js';
import type { Env } from '../../src/config.js';
import {
  createTestClient,
  createTestUser,
  startTestService,
  TEST_ARGON2,
  testEnv,
  type TestClient,
  type TestService,
  uniqueName,
  useTestService,
} from '../helpers/service.js';

/**
 * ATTACKS.md C: credentials at the password grant (RFC 6749 §4.3). Every Argon2 verify of this
 * file's service goes through `recorder`, a wrapper around the real hasher that notes the stored
 * PHC string and the password of each call; tests read what a request made Argon2 do from it.
 */

/** One Argon2 verify as the service asked for it. */
interface VerifyCall {
  readonly hash: string;
  readonly password: string;
}

/** The real Argon2id hasher (same code, same bounded queue), noting every verify it is asked for. */
function recordingHasher(): { hasher: PasswordHasher; calls: VerifyCall[] } {
  const inner = createPasswordHasher(TEST_ARGON2);
  const calls: VerifyCall[] = [];
  const verify = (hash: string, password: string) => {
    calls.push({ hash, password });
    return inner.verify(hash, password);
  };
  return { hasher: { ...inner, verify }, calls };
}

const recorder = recordingHasher();
const setup = useTestService({ passwords: recorder.hasher });
const service = () => setup.current();

let client: TestClient;
beforeAll(async () => {
  client = await createTestClient(service());
});

const WRONG = { error: 'invalid_grant', error_description: 'the username or password is incorrect' };
const TOO_MANY = { error: 'temporarily_unavailable', error_description: 'too many requests; retry later' };
const invalidRequest = (description: string) => ({ error: 'invalid_request', error_description: description });

type Form = Record<string, string>;
const passwordForm = (username: string, password: string): Form => ({ grant_type: 'password', username, password });

function postToken(on: TestService, body: Form | string, headers: Record<string, string> = {}) {
  return request(on.app).post('/token').type('form').set('Authorization', client.basic).set(headers).send(body);
}

/** Sends one request and returns its response with the Argon2 verifies it caused (requests in this file run one at a time). */
async function withVerifies(send: () => Promise<request.Response>): Promise<{ res: request.Response; verifies: VerifyCall[] }> {
  const from = recorder.calls.length;
  const res = await send();
  return { res, verifies: recorder.calls.slice(from) };
}

/** The refusal a bad request deserves: exact status and body, no-store, and not one Argon2 verify spent on it. */
async function expectRefusedBeforeHashing(body: Form | string, status: number, expected: object): Promise<void> {
  const { res, verifies } = await withVerifies(() => postToken(service(), body));
  expect(res.status).toBe(status);
  expect(res.body).toEqual(expected);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
  expect(verifies).toEqual([]);
}

/** Refresh families (sessions) of a user: a login that issued tokens leaves one behind. */
async function sessionsOf(userId: string): Promise<number> {
  const rows = await service().deps.db.selectFrom('refresh_families').select('id').where('user_id', '=', userId).execute();
  return rows.length;
}

async function createDisabledUser() {
  const user = await createTestUser(service());
  await service().deps.db.updateTable('users').set({ disabled: true }).where('id', '=', user.id).execute();
  return user;
}

/** Another service on this file's database (same key-encryption key) with its own Redis counters, closed after `use`. */
async function withService<T>(extra: Env, options: { passwords?: PasswordHasher }, use: (other: TestService) => Promise<T>): Promise<T> {
  const main = service();
  const other = await startTestService(setup.database(), {
    ...options,
    env: testEnv(setup.database(), {
      KEY_ENCRYPTION_KEYS: (main.config.keyEncryptionKeys ?? []).map((key) => key.toString('base64')).join(','),
      RATE_LIMIT_PREFIX: `${main.config.rateLimits.prefix}${uniqueName('other')}:`,
      ...extra,
    }),
  });
  try {
    return await use(other);
  } finally {
    await other.close();
  }
}

/** What a PHC string commits a verify to: algorithm, version, m, t, p and the salt and hash lengths (not their bytes). */
function argon2Cost(phc: string) {
  const [, algorithm, version, params = '', salt = '', hash = ''] = phc.split('$');
  const numbers = Object.fromEntries(params.split(',').map((pair) => [pair.split('=')[0], Number(pair.split('=')[1])]));
  return { algorithm, version, ...numbers, saltBytes: Buffer.from(salt, 'base64').length, hashBytes: Buffer.from(hash, 'base64').length };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const distinct = (values: unknown[]) => [...new Set(values.map((value) => JSON.stringify(value)))].map((text) => JSON.parse(text) as unknown);

describe('C1 unknown user, wrong password and disabled user', () => {
  /**
   * The whole response, headers included. Left out, because they move per request whoever asks:
   * `date` (the wall clock), and inside `RateLimit` the `r` (requests left to this IP, one fewer
   * after each probe) and `t` (seconds to the window's end) values. `X-Request-Id` is sent by the
   * probe, so it comes back the same and stays in. Everything else must be byte-for-byte equal.
   */
  const shape = (res: request.Response) => ({
    status: res.status,
    body: res.text,
    headers: Object.fromEntries(
      Object.entries(res.headers)
        .filter(([name]) => name !== 'date')
        .map(([name, value]) => [name, name === 'ratelimit' ? String(value).replace(/\br=\d+/, 'r=_').replace(/\bt=\d+/, 't=_') : value]),
    ),
  });

  it('C1 get the same status, body and headers, and no session', async () => {
    const known = await createTestUser(service());
    const disabled = await createDisabledUser();
    const probes: [string, string, string][] = [
      ['unknown user', uniqueName('nobody'), 'a-password-1'],
      ['a name no account can have', 'no such user', 'a-password-1'],
      ['wrong password', known.username, 'a-password-1'],
      ['disabled user, right password', disabled.username, disabled.password],
      ['disabled user, wrong password', disabled.username, 'a-password-1'],
    ];
    const shapes: Record<string, ReturnType<typeof shape>> = {};
    for (const [name, username, password] of probes) {
      shapes[name] = shape(await postToken(service(), passwordForm(username, password), { 'X-Request-Id': 'c1-probe' }));
    }
    const reference = shapes['unknown user']!;
    for (const [name] of probes) expect({ [name]: shapes[name] }).toEqual({ [name]: reference });
    expect(reference.status).toBe(400);
    expect(JSON.parse(reference.body)).toEqual(WRONG);
    expect(reference.headers).toMatchObject({ 'cache-control': 'no-store', pragma: 'no-cache', 'x-request-id': 'c1-probe' });
    expect(reference.headers['www-authenticate']).toBeUndefined();
    expect(await sessionsOf(disabled.id)).toBe(0);
    expect(await sessionsOf(known.id)).toBe(0);
  });
});

describe('C2 the cost of an unknown user', () => {
  const ATTEMPTS = 200;
  /** Spread over accounts so that none reaches the 100-failure account limit (LOGIN_ACCOUNT_FAILURE_LIMIT's maximum). */
  const ACCOUNTS = 4;

  /** What `attempts` made Argon2 do, per attempt: how many verifies, at what cost, and the median work. */
  async function argon2Profile(attempts: (readonly [username: string, password: string])[]) {
    const perAttempt: VerifyCall[][] = [];
    const answers: unknown[] = [];
    for (const [username, password] of attempts) {
      const { res, verifies } = await withVerifies(() => postToken(service(), passwordForm(username, password)));
      answers.push({ status: res.status, body: res.body });
      perAttempt.push(verifies);
    }
    const counts = perAttempt.map((calls) => calls.length);
    // Work in KiB-passes: memory x iterations x lanes of every verify of the attempt.
    const work = perAttempt.map((calls) =>
      calls.map((call) => argon2Cost(call.hash)).reduce((sum, cost) => sum + (cost['m'] ?? 0) * (cost['t'] ?? 0) * (cost['p'] ?? 0), 0),
    );
    return {
      answers: distinct(answers),
      verifiesPerAttempt: distinct(counts),
      medianVerifies: median(counts),
      costs: distinct(perAttempt.flat().map((call) => argon2Cost(call.hash))),
      medianWork: median(work),
      hashes: new Set(perAttempt.flat().map((call) => call.hash)),
    };
  }

  it(`C2 ${ATTEMPTS} unknown-user attempts each run exactly the Argon2id verify of a wrong password (instrumented, not timed)`, async () => {
    const users = await Promise.all(Array.from({ length: ACCOUNTS }, () => createTestUser(service())));
    const disabled = await Promise.all(Array.from({ length: ACCOUNTS }, () => createDisabledUser()));
    const range = Array.from({ length: ATTEMPTS }, (_, i) => i);
    const kinds: Record<string, (i: number) => readonly [string, string]> = {
      'wrong password': (i) => [users[i % ACCOUNTS]!.username, `wrong-password-${i}`],
      'unknown user': (i) => [uniqueName('nobody'), `wrong-password-${i}`],
      'a name no account can have': (i) => [`no such user ${i}`, `wrong-password-${i}`],
      'disabled user, right password': (i) => [disabled[i % ACCOUNTS]!.username, disabled[i % ACCOUNTS]!.password],
    };
    const profiles: Record<string, Awaited<ReturnType<typeof argon2Profile>>> = {};
    for (const [kind, attempt] of Object.entries(kinds)) profiles[kind] = await argon2Profile(range.map(attempt));

    const { memoryKib: m, iterations: t, parallelism: p } = TEST_ARGON2;
    const expected = {
      answers: [{ status: 400, body: WRONG }],
      verifiesPerAttempt: [1],
      medianVerifies: 1,
      costs: [{ algorithm: 'argon2id', version: 'v=19', m, t, p, saltBytes: 16, hashBytes: 32 }],
      medianWork: m * t * p,
    };
    expect(profiles).toEqual(Object.fromEntries(Object.keys(kinds).map((kind) => [kind, { ...expected, hashes: expect.any(Set) }])));
    // The unknown paths verify against a hash of their own (the dummy), never against some real user's.
    const realHashes = [...users, ...disabled].map((user) => user.password_hash);
    const unknownHashes = [...profiles['unknown user']!.hashes, ...profiles['a name no account can have']!.hashes];
    expect(unknownHashes.filter((hash) => realHashes.includes(hash))).toEqual([]);
    expect([...profiles['wrong password']!.hashes].sort()).toEqual(users.map((user) => user.password_hash).sort());
  }, 120_000);
});

describe('C3 oversized passwords', () => {
  it.each([
    ['1 KiB + 1 byte', 1025, 400, invalidRequest('password is too long')],
    ['100 KB', 100_000, 413, invalidRequest('the request body is too large')],
    ['1 MB', 1_000_000, 413, invalidRequest('the request body is too large')],
  ])('C3 a %s password is refused before any hashing', async (_size, length, status, expected) => {
    const user = await createTestUser(service());
    await expectRefusedBeforeHashing(passwordForm(user.username, 'x'.repeat(length)), status, expected);
  });
});

describe('C4 a burst of failures', () => {
  it('C4 50 parallel failures against a per-IP limit of 5: five reach Argon2, the rest get 429 with Retry-After', async () => {
    const counted = recordingHasher();
    await withService({ LOGIN_IP_LIMIT: '5' }, { passwords: counted.hasher }, async (limited) => {
      const victim = await createTestUser(limited);
      const passwords = Array.from({ length: 50 }, (_, i) => `guess-${i}`);
      const responses = await Promise.all(passwords.map((password) => postToken(limited, passwordForm(victim.username, password))));

      const failed = passwords.filter((_, i) => responses[i]!.status === 400);
      const limitedOut = responses.filter((res) => res.status === 429);
      expect([failed.length, limitedOut.length]).toEqual([5, 45]);
      for (const res of responses.filter((r) => r.status === 400)) expect(res.body).toEqual(WRONG);
      for (const res of limitedOut) {
        expect(res.body).toEqual(TOO_MANY);
        expect(res.headers['cache-control']).toBe('no-store');
        expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60); // LOGIN_IP_WINDOW's default
        expect(res.headers['retry-after']).toMatch(/^\d+$/);
      }
      // Exactly the five answered attempts were verified; not one refused guess reached the hasher.
      expect(counted.calls.map((call) => call.password).sort()).toEqual(failed.sort());
    });
  });

  /**
   * Memory and latency are bounded by construction, and that construction is what is asserted: at
   * most ARGON2_MAX_CONCURRENCY verifies run at once (memory: that many x ARGON2_MEMORY_KIB), at
   * most ARGON2_QUEUE_LIMIT wait (latency: a bounded queue ahead of any request), and the rest are
   * answered 503 at once. Wall-clock percentiles are not asserted: on a shared machine they would
   * measure the machine. The service's own hasher is used, wired from the environment.
   */
  it('C4 200 concurrent wrong-password attempts: no 500, at most ARGON2_MAX_CONCURRENCY hashing at once, overflow answered 503', async () => {
    await withService({ ARGON2_MAX_CONCURRENCY: '2', ARGON2_QUEUE_LIMIT: '20' }, {}, async (bounded) => {
      // Four accounts, so that no account reaches its 100-failure limit and every attempt reaches Argon2.
      const users = await Promise.all([0, 1, 2, 3].map(() => createTestUser(bounded)));
      const responses = await Promise.all(
        Array.from({ length: 200 }, (_, i) => postToken(bounded, passwordForm(users[i % 4]!.username, 'wrong-password'))),
      );
      const byStatus = new Map<number, number>();
      for (const res of responses) byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
      expect([...byStatus.keys()].sort()).toEqual([400, 503]);
      const busy = responses.find((res) => res.status === 503)!;
      expect(busy.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is busy; retry shortly' });
      expect(busy.headers['retry-after']).toBe('1');
      expect(bounded.deps.passwords.load.peak).toBeLessThanOrEqual(2);
      expect(bounded.deps.passwords.load.active).toBe(0);
      expect(bounded.deps.passwords.load.queued).toBe(0);
    });
  });
});

describe('C5 one account per name, one password per text', () => {
  let admin: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    admin = await createTestUser(service(), { username: 'Admin', password: 'the admin passphrase' });
  });
  const VARIANTS = ['admin', 'Admin', 'ADMIN', 'ａｄｍｉｎ', 'ＡＤＭＩＮ'];

  it.each(VARIANTS)('C5 username %s logs in to the one account admin', async (variant) => {
    const res = await postToken(service(), passwordForm(variant, 'the admin passphrase'));
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token).sub).toBe(admin.id);
  });

  it('C5 no second account can be registered under any variant of Admin', async () => {
    await withService({ REGISTRATION: 'open' }, {}, async (open) => {
      for (const variant of VARIANTS) {
        const res = await request(open.app).post('/register').type('form').send({ username: variant, password: 'another fine passphrase' });
        expect({ variant, status: res.status, body: res.body }).toEqual({
          variant,
          status: 409,
          body: invalidRequest('this username cannot be registered'),
        });
      }
    });
    const rows = await service().deps.db.selectFrom('users').select(['id', 'username']).where('username', 'in', VARIANTS).execute();
    expect(rows).toEqual([{ id: admin.id, username: 'admin' }]);
  });

  it('C5 the NFC and NFD forms of a password are the same password, and a look-alike without accents is not', async () => {
    const nfc = 'café crème brûlée'.normalize('NFC');
    const nfd = nfc.normalize('NFD');
    expect(nfd).not.toBe(nfc);
    for (const stored of [nfc, nfd]) {
      const user = await createTestUser(service(), { password: stored });
      for (const typed of [nfc, nfd]) expect((await postToken(service(), passwordForm(user.username, typed))).status).toBe(200);
      const plain = await postToken(service(), passwordForm(user.username, 'cafe creme brulee'));
      expect([plain.status, plain.body]).toEqual([400, WRONG]);
    }
  });
});

describe('C6 control characters', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service());
  });
  const SUFFIXES = [
    ['NUL then more', '\u0000xyz'],
    ['a trailing NUL', '\u0000'],
    ['CR then more', '\rxyz'],
    ['LF then more', '\nxyz'],
    ['a trailing CR LF', '\r\n'],
  ];
  const cases = (['username', 'password'] as const).flatMap((field) => SUFFIXES.map(([name, suffix]) => [field, name!, suffix!] as const));

  it.each(cases)('C6 the right %s with %s appended is invalid_request, not a truncated match', async (field, _name, suffix) => {
    const form = passwordForm(user.username, user.password);
    await expectRefusedBeforeHashing(
      { ...form, [field]: form[field] + suffix },
      400,
      invalidRequest('username and password must not contain control characters'),
    );
    expect(await sessionsOf(user.id)).toBe(0);
  });
});

describe('C7 empty, missing and whitespace-only fields', () => {
  const full = passwordForm('someone', 'some password');
  const without = (name: string): Form => Object.fromEntries(Object.entries(full).filter(([key]) => key !== name));
  const BLANKS = [
    ['empty', ''],
    ['spaces', '   '],
    ['Unicode spaces', '\u00a0\u3000'],
  ];
  const cases = [
    ['grant_type', 'grant_type is required'],
    ['username', 'username is required'],
    ['password', 'password is required'],
  ].flatMap(([field, description]) => [
    [`missing ${field}`, without(field!), description!] as const,
    ...BLANKS.map(([blank, value]) => [`${blank} ${field}`, { ...full, [field!]: value! }, description!] as const),
  ]);

  it.each(cases)('C7 %s is invalid_request', async (_name, body, description) => {
    await expectRefusedBeforeHashing(body, 400, invalidRequest(description));
  });
});

describe('C8 passwords are taken as typed', () => {
  it('C8 surrounding spaces are part of the password', async () => {
    const user = await createTestUser(service(), { password: '  padded secret  ' });
    for (const almost of ['padded secret', '  padded secret', 'padded secret  ', ' padded secret ']) {
      const res = await postToken(service(), passwordForm(user.username, almost));
      expect({ almost, status: res.status, body: res.body }).toEqual({ almost, status: 400, body: WRONG });
    }
    expect((await postToken(service(), passwordForm(user.username, '  padded secret  '))).status).toBe(200);
  });

  it('C8 a 128-character password works, whole: neither a prefix nor a 72-byte truncation of it does', async () => {
    const password = `${'L'.repeat(120)}12345678`;
    const user = await createTestUser(service(), { password });
    // Wrong by a missing last character, a different last character, or anything after byte 72.
    for (const almost of [password.slice(0, 127), `${password.slice(0, 127)}9`, `${password.slice(0, 72)}${'X'.repeat(56)}`]) {
      const res = await postToken(service(), passwordForm(user.username, almost));
      expect([res.status, res.body]).toEqual([400, WRONG]);
    }
    expect((await postToken(service(), passwordForm(user.username, password))).status).toBe(200);
  });
});

describe('C9 array- and object-shaped parameters', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service());
  });
  const enc = encodeURIComponent;
  // Raw bodies that a qs-style parser would turn into arrays or objects: none may log in or reach Argon2.
  const login = (u: typeof user) => `username=${enc(u.username)}&password=${enc(u.password)}`;
  it.each<[string, (u: typeof user) => string, string]>([
    ['username[]=a&username[]=b', () => 'grant_type=password&username[]=a&username[]=b&password=x', 'the parameter username[] is repeated'],
    ['username[$ne]=', () => 'grant_type=password&username[$ne]=&password=x', 'username is required'],
    ['password[$ne]= with a real username', (u) => `grant_type=password&username=${enc(u.username)}&password[$ne]=`, 'password is required'],
    ['password[]= holding the real password', (u) => `grant_type=password&username=${enc(u.username)}&password[]=${enc(u.password)}`, 'password is required'],
    ['username[0]= holding the real username', (u) => `grant_type=password&username[0]=${enc(u.username)}&password=${enc(u.password)}`, 'username is required'],
    ['grant_type[]=password', (u) => `grant_type[]=password&${login(u)}`, 'grant_type is required'],
    ['grant_type[$eq]=password', (u) => `grant_type[$eq]=password&${login(u)}`, 'grant_type is required'],
  ])('C9 %s is invalid_request', async (_name, body, description) => {
    await expectRefusedBeforeHashing(body(user), 400, invalidRequest(description));
    expect(await sessionsOf(user.id)).toBe(0);
  });
});

describe('C10 grant types', () => {
  let user: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    user = await createTestUser(service());
  });

  it.each([
    'implicit',
    'urn:ietf:params:oauth:grant-type:device_code',
    'urn:ietf:params:oauth:grant-type:jwt-bearer',
    'urn:ietf:params:oauth:grant-type:token-exchange',
    'PASSWORD',
    'password ',
    '__proto__',
    'constructor',
    'toString',
  ])('C10 grant_type=%j is unsupported_grant_type', async (grantType) => {
    await expectRefusedBeforeHashing(
      { ...passwordForm(user.username, user.password), grant_type: grantType },
      400,
      { error: 'unsupported_grant_type', error_description: 'this grant_type is not supported' },
    );
    expect(await sessionsOf(user.id)).toBe(0);
  });

  // RFC 6749 §5.2: a grant the server supports but this client may not use is unauthorized_client.
  it.each<[string, ('password' | 'refresh_token' | 'client_credentials')[], Form]>([
    // Served since issue 22 (browser sign-in), so no longer unsupported: a client without it is refused.
    ['authorization_code, for a client allowed password only', ['password'], { grant_type: 'authorization_code', code: 'x'.repeat(43), code_verifier: 'y'.repeat(43) }],
    ['password, for a client allowed client_credentials only', ['client_credentials'], {}],
    ['refresh_token, for a client allowed password only', ['password'], { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43) }],
    ['client_credentials, for a client allowed password only', ['password'], { grant_type: 'client_credentials' }],
  ])('C10 %s is unauthorized_client', async (_name, grantTypes, overrides) => {
    const limited = await createTestClient(service(), { grantTypes });
    const { res, verifies } = await withVerifies(() =>
      postToken(service(), { ...passwordForm(user.username, user.password), ...overrides }, { Authorization: limited.basic }),
    );
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'unauthorized_client', error_description: 'this client may not use this grant_type' });
    expect(verifies).toEqual([]);
    expect(await sessionsOf(user.id)).toBe(0);
  });
});
