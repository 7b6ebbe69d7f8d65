/**
 * ATTACKS.md section B: refresh-token abuse, at `POST /token` (grant_type=refresh_token) and at
 * `POST /refresh` (the gateways' variant, which also takes JSON). Every case is asserted on the
 * response (status, full body) and on what it left behind in PostgreSQL: a refused refresh must
 * neither rotate nor revoke anything unless revoking is the point.
 */
import { randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { hashRefreshToken } from '../../src/refresh/tokens.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
  useTestService,
} from '../helpers/service.js';

const context = useTestService();
const service = (): TestService => context.current();

const INVALID_GRANT = { error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' };
const INVALID_SCOPE = { error: 'invalid_scope', error_description: 'the requested scope is not allowed for this user or client' };
const BASIC_CHALLENGE = 'Basic realm="tessera", charset="UTF-8"';
const SECOND = 1000;
const DAY = 86_400 * SECOND;
const NEW_PASSWORD = 'a brand new passphrase';
/** DESIGN.md defaults: REFRESH_REUSE_GRACE, REFRESH_TOKEN_IDLE_TTL, REFRESH_TOKEN_ABSOLUTE_TTL. */
const GRACE = 10 * SECOND;
const IDLE = 14 * DAY;
const ABSOLUTE = 90 * DAY;

/** The refresh grant is served twice (DESIGN.md): /token takes a form, /refresh a form or JSON. */
const ENDPOINTS = ['/token', '/refresh (form)', '/refresh (JSON)'] as const;
type Endpoint = (typeof ENDPOINTS)[number];

/** A refresh request with these body parameters (grant_type added at /token) and, if given, an Authorization header. */
function postRefresh(endpoint: Endpoint, params: Record<string, unknown>, authorization?: string, app = service().app) {
  let req = request(app).post(endpoint === '/token' ? '/token' : '/refresh');
  if (authorization !== undefined) req = req.set('Authorization', authorization);
  const body = { ...(endpoint === '/token' ? { grant_type: 'refresh_token' } : {}), ...params };
  return endpoint === '/refresh (JSON)' ? req.send(body) : req.type('form').send(body);
}

/** A refresh as a gateway sends it: Basic for a confidential client, client_id in the body for a public one. */
function refreshAt(endpoint: Endpoint, client: TestClient, token: unknown, extra: Record<string, string> = {}, app = service().app) {
  if (client.secret !== undefined) return postRefresh(endpoint, { refresh_token: token, ...extra }, client.basic, app);
  return postRefresh(endpoint, { refresh_token: token, client_id: client.id, ...extra }, undefined, app);
}
const refresh = (client: TestClient, token: string, extra: Record<string, string> = {}) => refreshAt('/token', client, token, extra);

async function login(client: TestClient, user: { username: string; password: string }, scope: string) {
  const res = await passwordGrant(service().app, client, user, { scope });
  expect(res.status).toBe(200);
  return res.body as { access_token: string; refresh_token: string; scope: string };
}

/**
 * A user logged in through a fresh confidential client (allowed `profile orders:read orders:write`),
 * by default with scope `profile orders:read`. The user also holds `billing`, which the client may not have.
 */
async function session(scope = 'profile orders:read') {
  const client = await createTestClient(service());
  const user = await createTestUser(service(), { scopes: ['profile', 'orders:read', 'billing'] });
  const tokens = await login(client, user, scope);
  return { client, user, tokens, familyId: decodeJwt(tokens.access_token).sid as string };
}
type Session = Awaited<ReturnType<typeof session>>;

/** Everything the database holds about a family: its row and the generations of its token rows. */
async function stateOf(familyId: string) {
  const db = service().deps.db;
  const family = await db.selectFrom('refresh_families').selectAll().where('id', '=', familyId).executeTakeFirst();
  const tokens = await db.selectFrom('refresh_tokens').select('generation').where('family_id', '=', familyId).orderBy('generation').execute();
  return { family, generations: tokens.map((row) => row.generation) };
}

/** Runs an attack and proves it had no effect: the family is exactly as before, and `ownToken` still refreshes for its own client. */
async function withoutSideEffect<T>(s: Session, ownToken: string, attack: () => Promise<T>): Promise<T> {
  const before = await stateOf(s.familyId);
  const result = await attack();
  expect(await stateOf(s.familyId)).toEqual(before);
  expect((await refresh(s.client, ownToken)).status).toBe(200);
  return result;
}

/** Rotates once: the login's token becomes the parent of the returned successor. */
async function rotate(s: Session): Promise<string> {
  const res = await refresh(s.client, s.tokens.refresh_token);
  expect(res.status).toBe(200);
  return res.body.refresh_token as string;
}

const reuseEvents = (familyId: string, from: TestService = service()) =>
  from.logs.entries('refresh_token_reuse_detected').filter((entry) => entry['family_id'] === familyId);
/** The refresh_failed events of this client's refreshes: [reason, family_id] (no family for an unknown token). */
const failures = (client: TestClient) =>
  service().logs.entries('refresh_failed').filter((entry) => entry['client_id'] === client.id).map((entry) => [entry['reason'], entry['family_id']]);

describe('B1 reuse of a rotated token', () => {
  // ATTACKS.md I2 refines B1: a parent whose successor has never been used is a retry whose answer
  // may have been lost, however late; it is reuse once the successor has been used.
  it.each(ENDPOINTS)('B1 at %s: the parent after the grace window gets its unused successor; once that is used, invalid_grant, the family is revoked and it is logged', async (endpoint) => {
    const s = await session();
    const successor = await rotate(s);
    service().clock.advance(GRACE + SECOND);
    const late = await refreshAt(endpoint, s.client, s.tokens.refresh_token);
    expect(late.status).toBe(200);
    expect(late.body.refresh_token).toBe(successor);
    const current = await refreshAt(endpoint, s.client, successor);
    expect(current.status).toBe(200);
    const replay = await refreshAt(endpoint, s.client, s.tokens.refresh_token);
    expect(replay.status).toBe(400);
    expect(replay.body).toEqual(INVALID_GRANT);
    const next = await refreshAt(endpoint, s.client, current.body.refresh_token);
    expect(next.status).toBe(400);
    expect(next.body).toEqual(INVALID_GRANT);
    // Revoked for reuse, the sealed successor erased, and no token minted after the ones handed out.
    const state = await stateOf(s.familyId);
    expect(state.family).toMatchObject({ revoked_reason: 'reuse', successor_ciphertext: null, generation: 3 });
    expect(state.generations).toEqual([1, 2, 3]);
    expect(reuseEvents(s.familyId)).toEqual([
      expect.objectContaining({ level: 'warn', client_id: s.client.id, user_id: s.user.id, generation_presented: 1, generation_current: 3 }),
    ]);
  });

  it('B1 the grace window counts from the rotation: a replay inside it is an ordinary retry, one after it is logged at warn as late', async () => {
    const s = await session();
    const successor = await rotate(s);
    service().clock.advance(GRACE - SECOND);
    expect((await refresh(s.client, s.tokens.refresh_token)).body.refresh_token).toBe(successor);
    service().clock.advance(2 * SECOND);
    expect((await refresh(s.client, s.tokens.refresh_token)).body.refresh_token).toBe(successor);
    const replays = service().logs.entries('refresh_token_replayed').filter((entry) => entry['family_id'] === s.familyId);
    expect(replays.map((entry) => [entry['level'], entry['late']])).toEqual([['info', undefined], ['warn', true]]);
    expect(reuseEvents(s.familyId)).toEqual([]);
    expect((await refresh(s.client, successor)).status).toBe(200);
  });

  it('B1 a parent replayed inside the grace window after a logout gets nothing', async () => {
    const s = await session();
    const successor = await rotate(s);
    const logout = await request(service().app).post('/revoke').type('form').set('Authorization', s.client.basic).send({ token: successor });
    expect(logout.status).toBe(200);
    const replay = await refresh(s.client, s.tokens.refresh_token);
    expect(replay.status).toBe(400);
    expect(replay.body).toEqual(INVALID_GRANT);
    expect((await stateOf(s.familyId)).generations).toEqual([1, 2]);
    expect(failures(s.client)).toEqual([['revoked', s.familyId]]);
  });
});

describe('B2 a grandparent token reused', () => {
  it.each([
    ['at once, inside the grace window', 0],
    ['a day later', DAY],
  ])('B2 %s: the family is revoked, the current token and the grace replay die', async (_when, delay) => {
    const s = await session();
    const parent = await rotate(s);
    const current = (await refresh(s.client, parent)).body.refresh_token as string;
    service().clock.advance(delay);
    const replay = await refresh(s.client, s.tokens.refresh_token);
    expect(replay.status).toBe(400);
    expect(replay.body).toEqual(INVALID_GRANT);
    for (const token of [current, parent]) expect((await refresh(s.client, token)).body).toEqual(INVALID_GRANT);
    expect((await stateOf(s.familyId)).family).toMatchObject({ revoked_reason: 'reuse', generation: 3 });
    expect(reuseEvents(s.familyId)).toHaveLength(1);
  });

  it('B2 only the immediate parent is replayed inside the grace window, never an older token', async () => {
    const s = await session();
    const parent = await rotate(s);
    const current = (await refresh(s.client, parent)).body.refresh_token as string;
    const retry = await refresh(s.client, parent);
    expect(retry.status).toBe(200);
    expect(retry.body.refresh_token).toBe(current);
    const grandparent = await refresh(s.client, s.tokens.refresh_token);
    expect(grandparent.status).toBe(400);
    expect(grandparent.body).toEqual(INVALID_GRANT);
    expect((await stateOf(s.familyId)).family?.revoked_reason).toBe('reuse');
  });
});

describe('B3 parallel refreshes of one token across replicas', () => {
  /** A second replica: the same database, Redis prefix and KEY_ENCRYPTION_KEYS (grace replays are sealed with them), and the same clock. */
  async function startReplica(): Promise<TestService> {
    const keys = service().config.keyEncryptionKeys!.map((key) => key.toString('base64')).join(',');
    return startTestService(context.database(), { env: testEnv(context.database(), { KEY_ENCRYPTION_KEYS: keys }), clock: service().clock });
  }

  it('B3 20 parallel refreshes split across two replicas and both endpoints: one successor for all, no forked family', async () => {
    const s = await session();
    const replica = await startReplica();
    try {
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          refreshAt(i % 4 < 2 ? '/token' : '/refresh (JSON)', s.client, s.tokens.refresh_token, {}, i % 2 === 0 ? service().app : replica.app),
        ),
      );
      expect(responses.map((res) => res.status)).toEqual(Array(20).fill(200));
      const successor = responses[0]!.body.refresh_token as string;
      expect(responses.map((res) => res.body.refresh_token)).toEqual(Array(20).fill(successor));
      // One live successor: the family moved one generation, holds two token rows, and nothing was taken for reuse.
      let state = await stateOf(s.familyId);
      expect(state.family).toMatchObject({ generation: 2, revoked_at: null });
      expect(state.generations).toEqual([1, 2]);
      expect(await service().deps.db.selectFrom('refresh_families').select('id').where('user_id', '=', s.user.id).execute()).toEqual([{ id: s.familyId }]);
      expect([...reuseEvents(s.familyId), ...reuseEvents(s.familyId, replica)]).toEqual([]);

      // The chain goes on from that one successor, on either replica.
      const next = await refreshAt('/refresh (JSON)', s.client, successor, {}, replica.app);
      expect(next.status).toBe(200);
      expect(next.body.refresh_token).not.toBe(successor);
      expect((await refresh(s.client, next.body.refresh_token)).status).toBe(200);
      state = await stateOf(s.familyId);
      expect(state.family).toMatchObject({ generation: 4, revoked_at: null });
      expect(state.generations).toEqual([1, 2, 3, 4]);
    } finally {
      await replica.close();
    }
  });

  it('B3 a replica whose KEY_ENCRYPTION_KEYS lack the key a successor was sealed with answers the retry 503, revokes nothing, and logs an error', async () => {
    const s = await session();
    // A key rotation rolled out to one replica only: it seals with the new key, the other holds the old one alone.
    const old = service().config.keyEncryptionKeys!.map((key) => key.toString('base64')).join(',');
    const rolledOut = await startTestService(context.database(), {
      env: testEnv(context.database(), { KEY_ENCRYPTION_KEYS: `${randomBytes(32).toString('base64')},${old}` }),
      clock: service().clock,
    });
    try {
      const rotated = await refreshAt('/token', s.client, s.tokens.refresh_token, {}, rolledOut.app);
      expect(rotated.status).toBe(200);
      const before = await stateOf(s.familyId);
      const retry = await refresh(s.client, s.tokens.refresh_token);
      expect(retry.status).toBe(503);
      expect(retry.headers['retry-after']).toBe('5');
      expect(retry.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' });
      expect(await stateOf(s.familyId)).toEqual(before);
      expect(before.family).toMatchObject({ generation: 2, revoked_at: null });
      expect(reuseEvents(s.familyId)).toEqual([]);
      const errors = service().logs.entries().filter((entry) => entry['family_id'] === s.familyId && entry['level'] === 'error');
      expect(errors).toEqual([expect.objectContaining({ client_id: s.client.id, user_id: s.user.id, msg: expect.stringContaining('KEY_ENCRYPTION_KEYS') })]);
      // The replica that holds the key serves the same retry, and the successor goes on working.
      const served = await refreshAt('/token', s.client, s.tokens.refresh_token, {}, rolledOut.app);
      expect(served.status).toBe(200);
      expect(served.body.refresh_token).toBe(rotated.body.refresh_token);
      expect((await refresh(s.client, rotated.body.refresh_token)).status).toBe(200);
    } finally {
      await rolledOut.close();
    }
  });
});

describe('B4 client binding and client authentication', () => {
  it.each(ENDPOINTS.flatMap((endpoint) => (['confidential', 'public'] as const).map((type) => [endpoint, type] as const)))(
    "B4 at %s, another (%s) client's refresh token: invalid_grant, and nothing changes",
    async (endpoint, type) => {
      const s = await session();
      const other = await createTestClient(service(), { type });
      const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt(endpoint, other, s.tokens.refresh_token));
      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID_GRANT);
      expect(failures(other)).toEqual([['other_client', s.familyId]]);
    },
  );

  it('B4 another client replaying the parent inside the grace window gets neither the successor nor a revocation', async () => {
    const s = await session();
    const successor = await rotate(s);
    const other = await createTestClient(service());
    const res = await withoutSideEffect(s, successor, () => refresh(other, s.tokens.refresh_token));
    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID_GRANT);
  });

  it.each([
    ['a confidential client sending only its client_id', '/token', (s: Session) => ({ client_id: s.client.id }), 'client authentication failed'],
    ['a confidential client sending only its client_id', '/refresh (JSON)', (s: Session) => ({ client_id: s.client.id }), 'client authentication failed'],
    ['no client authentication at all', '/token', () => ({}), 'client authentication is required'],
    ['no client authentication at all', '/refresh (JSON)', () => ({}), 'client authentication is required'],
    [
      'a confidential client with a wrong secret',
      '/refresh (form)',
      (s: Session) => ({ client_id: s.client.id, client_secret: `${s.client.secret}x` }),
      'client authentication failed',
    ],
  ] as const)('B4 %s, at %s: 401 invalid_client with a Basic challenge, the token unused', async (_name, endpoint, credentials, description) => {
    const s = await session();
    const res = await withoutSideEffect(s, s.tokens.refresh_token, () => postRefresh(endpoint, { refresh_token: s.tokens.refresh_token, ...credentials(s) }));
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(BASIC_CHALLENGE);
    expect(res.body).toEqual({ error: 'invalid_client', error_description: description });
  });
});

describe('B5 refresh for a user who is disabled, deleted or has a new password', () => {
  let gateway: TestClient;
  let admin: Awaited<ReturnType<typeof createTestUser>>;
  beforeAll(async () => {
    gateway = await createTestClient(service(), { scopes: ['admin'] });
    admin = await createTestUser(service(), { roles: { administrators: ['admin'] } });
  });

  /** An admin API call, with a fresh admin token (other cases move the clock past any older token's expiry), answering `status`. */
  async function asAdmin(method: 'patch' | 'delete' | 'post', path: string, status: number, body?: object) {
    const { access_token } = await login(gateway, admin, 'admin');
    const req = request(service().app)[method](path).set('Authorization', `Bearer ${access_token}`);
    expect((await (body === undefined ? req : req.send(body))).status).toBe(status);
  }
  /**
   * A change made behind the API's back (a restore, a script, a race with the revocation): the
   * refresh itself must check the user. (A password change is what revokes the families, in the
   * same transaction; password_changed_at set by hand, with the hash unchanged, is no password
   * change, and comparing it with a family's created_at compared two hosts' clocks: ATTACKS.md I5.)
   */
  async function updateUser(s: Session, changes: { disabled?: boolean }) {
    await service().deps.db.updateTable('users').set(changes).where('id', '=', s.user.id).execute();
  }

  it.each([
    ['disabled by an admin', (s: Session) => asAdmin('patch', `/admin/users/${s.user.id}`, 200, { disabled: true }), 'revoked'],
    [
      'disabled and enabled again by an admin (the session does not come back)',
      async (s: Session) => {
        await asAdmin('patch', `/admin/users/${s.user.id}`, 200, { disabled: true });
        await asAdmin('patch', `/admin/users/${s.user.id}`, 200, { disabled: false });
      },
      'revoked',
    ],
    ['deleted by an admin', (s: Session) => asAdmin('delete', `/admin/users/${s.user.id}`, 204), 'unknown_token'],
    ['given a new password by an admin', (s: Session) => asAdmin('post', `/admin/users/${s.user.id}/password`, 200, { password: NEW_PASSWORD }), 'revoked'],
    [
      'changing their own password',
      async (s: Session) => {
        const res = await request(service().app)
          .post('/users/me/password')
          .set('Authorization', `Bearer ${s.tokens.access_token}`)
          .send({ current_password: s.user.password, new_password: NEW_PASSWORD });
        expect(res.status).toBe(204);
      },
      'revoked',
    ],
    ['disabled in the database, sessions left alone', (s: Session) => updateUser(s, { disabled: true }), 'user_disabled'],
    ['deleted in the database', async (s: Session) => void (await service().deps.db.deleteFrom('users').where('id', '=', s.user.id).execute()), 'unknown_token'],
  ])('B5 a user %s: invalid_grant for the current token and for a grace replay', async (_name, end, reason) => {
    const s = await session();
    const successor = await rotate(s);
    await end(s);
    const generations = (await stateOf(s.familyId)).generations;
    for (const token of [successor, s.tokens.refresh_token]) {
      const res = await refresh(s.client, token);
      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID_GRANT);
    }
    expect((await stateOf(s.familyId)).generations).toEqual(generations);
    // A deleted user's families went with the user: their tokens are unknown.
    const family = reason === 'unknown_token' ? undefined : s.familyId;
    expect(failures(s.client)).toEqual([[reason, family], [reason, family]]);
  });
});

describe('B6 idle and absolute expiry', () => {
  const expectExpired = async (s: Session, token: string) => {
    const before = await stateOf(s.familyId);
    const res = await refresh(s.client, token);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID_GRANT);
    expect(await stateOf(s.familyId)).toEqual(before);
    expect(failures(s.client)).toEqual([['expired', s.familyId]]);
  };

  it('B6 a family unused for REFRESH_TOKEN_IDLE_TTL (14 days) is dead; each use restarts the idle clock', async () => {
    const s = await session();
    service().clock.advance(IDLE - SECOND);
    const successor = await rotate(s);
    service().clock.advance(IDLE - SECOND);
    const next = (await refresh(s.client, successor)).body.refresh_token as string;
    service().clock.advance(IDLE);
    await expectExpired(s, next);
  });

  it('B6 a family ends at REFRESH_TOKEN_ABSOLUTE_TTL (90 days) however often it is used', async () => {
    const s = await session();
    let current = s.tokens.refresh_token;
    // Every 10 days, the last time at 90 days less a second.
    for (const step of [...Array<number>(8).fill(10 * DAY), ABSOLUTE - 80 * DAY - SECOND]) {
      service().clock.advance(step);
      const res = await refresh(s.client, current);
      expect(res.status).toBe(200);
      current = res.body.refresh_token;
    }
    // One second later the family is over.
    service().clock.advance(SECOND);
    await expectExpired(s, current);
  });
});

describe('B7 malformed refresh tokens', () => {
  const MALFORMED: readonly (readonly [string, string])[] = [
    ['garbage', 'not-a-token'],
    ['10 KB', 'x'.repeat(10 * 1024)],
    ['SQL metacharacters', "' OR 1=1--"],
    ['SQL at the length of a token', "'; DROP TABLE refresh_tokens; --".padEnd(43, '-')],
    ['LIKE wildcards at the length of a token', '%'.repeat(43)],
    ['underscores (a LIKE wildcard, and well-formed)', '_'.repeat(43)],
    ['a NUL', `${'A'.repeat(42)}\0`],
    ['non-ASCII', 'é'.repeat(43)],
    ['well-formed but unknown', 'A'.repeat(43)],
  ];

  it.each(ENDPOINTS.flatMap((endpoint) => MALFORMED.map(([name, value]) => [endpoint, name, value] as const)))(
    'B7 at %s, %s: invalid_grant, never a 500',
    async (endpoint, _name, value) => {
      const s = await session();
      const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt(endpoint, s.client, value));
      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID_GRANT);
      // Only a token of the right shape is looked up, and logged as unknown.
      expect(failures(s.client)).toEqual(value === 'A'.repeat(43) || value === '_'.repeat(43) ? [['unknown_token', undefined]] : []);
    },
  );

  // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted from the
  // request", and a missing required parameter is invalid_request (§5.2). Tessera already treats an
  // empty grant_type, username, password, scope and (at /revoke) token that way.
  it.each(ENDPOINTS.flatMap((endpoint) => [[endpoint, 'no', undefined] as const, [endpoint, 'an empty', ''] as const]))(
    'B7 at %s, %s refresh_token: invalid_request',
    async (endpoint, _name, value) => {
      const s = await session();
      const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt(endpoint, s.client, value));
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: 'refresh_token is required' });
    },
  );

  it.each([
    ['null', null, 'must be a string'],
    ['a number', 42, 'must be a string'],
    ['an object', { $ne: '' }, 'must be a string'],
    ['an array', ['A'.repeat(43)], 'is repeated'],
  ])('B7 at /refresh (JSON), %s as refresh_token: invalid_request', async (_name, value, problem) => {
    const s = await session();
    const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt('/refresh (JSON)', s.client, value));
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: `the parameter refresh_token ${problem}` });
  });

  it('B7 near misses of a live token (its stored hash, its other case, one character changed, its prefix) are invalid_grant', async () => {
    const s = await session();
    const live = s.tokens.refresh_token;
    const changed = `${live.slice(0, -1)}${live.endsWith('A') ? 'B' : 'A'}`;
    const nearMisses = [hashRefreshToken(live), live.toUpperCase(), live.toLowerCase(), changed, live.slice(0, 42), `${live} `];
    const responses = await withoutSideEffect(s, live, () => Promise.all(nearMisses.map((value) => refresh(s.client, value))));
    expect(responses.map((res) => [res.status, res.body])).toEqual(nearMisses.map(() => [400, INVALID_GRANT]));
  });
});

describe('B8 scope on refresh', () => {
  it.each(ENDPOINTS.flatMap((endpoint) => [
    [endpoint, 'granted to user and client but not at this login', 'profile orders:read'] as const,
    [endpoint, 'the user does not have', 'profile orders:write'] as const,
    [endpoint, 'the client may not have', 'profile billing'] as const,
  ]))('B8 at %s, a wider scope (one %s): invalid_scope, and the token is not consumed', async (endpoint, _name, scope) => {
    const s = await session('profile');
    const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt(endpoint, s.client, s.tokens.refresh_token, { scope }));
    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID_SCOPE);
  });

  it.each(ENDPOINTS)('B8 at %s, a narrower scope narrows that access token only; the next refresh gets the original set', async (endpoint) => {
    const s = await session();
    const narrowed = await refreshAt(endpoint, s.client, s.tokens.refresh_token, { scope: 'profile' });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.scope).toBe('profile');
    expect(decodeJwt(narrowed.body.access_token).scope).toBe('profile');
    expect((await stateOf(s.familyId)).family?.scope).toEqual(['orders:read', 'profile']);
    const again = await refreshAt(endpoint, s.client, narrowed.body.refresh_token);
    expect(again.status).toBe(200);
    expect(again.body.scope).toBe('orders:read profile');
    expect(decodeJwt(again.body.access_token).scope).toBe('orders:read profile');
  });
});

describe('B9 an access token as refresh_token', () => {
  it.each(ENDPOINTS)('B9 at %s: invalid_grant, and the session is untouched', async (endpoint) => {
    const s = await session();
    const res = await withoutSideEffect(s, s.tokens.refresh_token, () => refreshAt(endpoint, s.client, s.tokens.access_token));
    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID_GRANT);
  });
});

describe("B10 revoking another client's token", () => {
  it.each([
    ['refresh token', 'confidential', (s: Session) => s.tokens.refresh_token, undefined],
    ['refresh token (hint refresh_token)', 'confidential', (s: Session) => s.tokens.refresh_token, 'refresh_token'],
    ['access token', 'confidential', (s: Session) => s.tokens.access_token, undefined],
    ['access token (hint access_token)', 'confidential', (s: Session) => s.tokens.access_token, 'access_token'],
    ['refresh token', 'public', (s: Session) => s.tokens.refresh_token, undefined],
  ] as const)("B10 another client's %s, revoked by a %s client: 200, empty, and it still works for its own client", async (_name, type, token, hint) => {
    const s = await session();
    const other = await createTestClient(service(), { type });
    const params = { token: token(s), ...(hint ? { token_type_hint: hint } : {}) };
    const res = await withoutSideEffect(s, s.tokens.refresh_token, () => {
      const req = request(service().app).post('/revoke').type('form');
      return other.secret === undefined ? req.send({ ...params, client_id: other.id }) : req.set('Authorization', other.basic).send(params);
    });
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect(service().logs.entries('refresh_family_revoked').filter((entry) => entry['family_id'] === s.familyId)).toEqual([]);
  });
});
