import { sql } from 'kysely';
import pg from 'pg';
import request from 'supertest';
import { decodeJwt } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { TestDatabase } from './helpers/database.js';
import { type DatabaseProxy, useProxiedService } from './helpers/database-proxy.js';
import { createTestClient, createTestUser, passwordGrant, type TestService } from './helpers/service.js';

let database: TestDatabase;
let proxy: DatabaseProxy;
let service: TestService;

const proxied = useProxiedService();
beforeAll(() => {
  [database, proxy, service] = [proxied.database(), proxied.proxy(), proxied.service()];
});

/** Waits until a query of the service (application_name tessera) is blocked on a row lock. */
async function waitForBlockedRotation(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await sql`
      select pid from pg_stat_activity
      where application_name = 'tessera' and datname = ${database.name} and wait_event_type = 'Lock'`.execute(database.db);
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the refresh never reached the family lock');
}

/** A new user's login through a new client: the family (sid), and a refresh of the login's token. */
async function startSession() {
  const client = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const res = await passwordGrant(service.app, client, user);
  expect(res.status).toBe(200);
  const refresh = () =>
    request(service.app)
      .post('/token')
      .type('form')
      .set('Authorization', client.basic)
      .send({ grant_type: 'refresh_token', refresh_token: res.body.refresh_token });
  return { refresh, client, parent: res.body.refresh_token as string, familyId: decodeJwt(res.body.access_token).sid as string };
}

/** Runs `during` while another connection holds the family row with `lock` (`for update`, `for share`); rolls back after. */
async function whileHeld<T>(familyId: string, lock: string, during: (blocker: pg.Client) => Promise<T>): Promise<T> {
  const blocker = new pg.Client({ connectionString: database.url });
  await blocker.connect();
  try {
    await blocker.query('begin');
    await blocker.query(`select id from refresh_families where id = $1 ${lock}`, [familyId]);
    return await during(blocker);
  } finally {
    await blocker.query('rollback').catch(() => undefined);
    await blocker.end();
  }
}

const familyRow = (familyId: string) => database.db.selectFrom('refresh_families').selectAll().where('id', '=', familyId).executeTakeFirstOrThrow();

it('a database failure in the middle of a rotation answers 503 and leaves the presented token usable', async () => {
  const { refresh, familyId } = await startSession();
  // Hold the family row from outside, so the service's rotation transaction is open and waiting
  // inside PostgreSQL when the connection dies.
  try {
    await whileHeld(familyId, 'for update', async () => {
      const response = refresh().then((res) => res); // .then() sends the request now
      await waitForBlockedRotation();
      proxy.cut();
      const res = await response;
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' });
    });
  } finally {
    proxy.restore();
  }

  expect(await familyRow(familyId)).toMatchObject({ generation: 1, revoked_at: null, rotated_at: null });
  const retried = await refresh();
  expect(retried.status).toBe(200);
  expect(retried.body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
});

it('a rotation that finds its family held by another write waits for it, then rotates (no reuse, no error)', async () => {
  const { refresh, familyId } = await startSession();
  // Something else (an operator's query, a revocation that then rolls back) holds the row: the
  // compare-and-set skips it, and the re-read waits for it to end.
  const res = await whileHeld(familyId, 'for update', async (blocker) => {
    const response = refresh().then((answer) => answer);
    await waitForBlockedRotation();
    await blocker.query('rollback');
    return response;
  });
  expect(res.status).toBe(200);
  expect(res.body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(await familyRow(familyId)).toMatchObject({ generation: 2, revoked_at: null });
});

it('a rotation that keeps losing the compare-and-set answers 503 busy after three tries, and leaves the token usable', async () => {
  const { refresh, familyId } = await startSession();
  // A share lock on the family (what another transaction's foreign-key check takes) makes every
  // compare-and-set (FOR UPDATE SKIP LOCKED) skip the row, while the re-read (FOR SHARE) does not
  // wait for it: each attempt loses, and the refresh must give up rather than spin.
  const rotations = proxy.countSent('with "advanced" as');
  const rereads = proxy.countSent('for share');
  const res = await whileHeld(familyId, 'for share', () => refresh());
  expect(res.status).toBe(503);
  // Three compare-and-sets (the first one with the read), each lost one followed by a re-read
  // that waits for writers: then busy, not a fourth.
  expect([rotations(), rereads()]).toEqual([3, 2]);
  expect(res.headers['retry-after']).toBe('1');
  expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is busy; retry shortly' });

  expect(await familyRow(familyId)).toMatchObject({ generation: 1, revoked_at: null, rotated_at: null });
  expect(service.logs.entries('refresh_token_reuse_detected').filter((entry) => entry['family_id'] === familyId)).toEqual([]);
  const retried = await refresh();
  expect(retried.status).toBe(200);
  expect(retried.body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
});

it('a rotation PostgreSQL refuses (its disk full) answers 503 and is not logged as of unknown outcome: it did not commit', async () => {
  const { refresh, familyId } = await startSession();
  const unknownBefore = service.logs.entries('refresh_outcome_unknown').length;
  // A trigger stands in for a full disk: PostgreSQL answers the rotation's insert with SQLSTATE 53100.
  await sql`create or replace function tessera_test_disk_full() returns trigger language plpgsql as $$
    begin raise exception 'could not extend file' using errcode = 'disk_full'; end $$`.execute(database.db);
  await sql`create trigger tessera_test_disk_full before insert on refresh_tokens for each row
    when (new.family_id = ${sql.lit(familyId)}::uuid) execute function tessera_test_disk_full()`.execute(database.db);
  try {
    const res = await refresh();
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' });
  } finally {
    await sql`drop trigger tessera_test_disk_full on refresh_tokens`.execute(database.db);
  }
  expect(await familyRow(familyId)).toMatchObject({ generation: 1, revoked_at: null, rotated_at: null });
  expect((await refresh()).status).toBe(200);
  // An event of unknown outcome would come from a read made after the 503: looked for after a
  // later request and a moment more, long enough for that read on an idle database.
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(service.logs.entries('refresh_outcome_unknown').slice(unknownBefore)).toEqual([]);
});

it('a refresh without a scope reads and rotates its family in one statement; with a scope, the scope is decided between a read and the rotation', async () => {
  const { refresh } = await startSession();
  // A day after the login, well inside REFRESH_TOKEN_IDLE_TTL: the statement itself checks the idle deadline.
  service.clock.advance(24 * 60 * 60 * 1000);
  const familyStatements = proxy.countSent('"refresh_families"');
  const first = await refresh();
  expect(first.status).toBe(200);
  // One round trip to PostgreSQL for the whole rotation: the read, the compare-and-set and the successor.
  expect(familyStatements()).toBe(1);
  // The parent again, within REFRESH_REUSE_GRACE: the same statement reads the family, moves
  // nothing, and the sealed successor is opened from what it read: still one statement.
  const replayed = proxy.countSent('"refresh_families"');
  const replay = await refresh();
  expect(replay.status).toBe(200);
  expect(replay.body.refresh_token).toBe(first.body.refresh_token);
  expect(replayed()).toBe(1);

  const client = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const login = await passwordGrant(service.app, client, user);
  const narrowed = proxy.countSent('"refresh_families"');
  const res = await request(service.app)
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token, scope: 'profile' });
  expect(res.status).toBe(200);
  expect(res.body.scope).toBe('profile');
  expect(narrowed()).toBe(2);
});

it('a login starts its session in one statement: the guard, the family and its first token, no transaction around them', async () => {
  const client = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const familyStatements = proxy.countSent('"refresh_families"');
  const transactions = proxy.countSent('begin');
  const res = await passwordGrant(service.app, client, user);
  expect(res.status).toBe(200);
  expect([familyStatements(), transactions()]).toEqual([1, 0]);
  const family = await familyRow(decodeJwt(res.body.access_token).sid as string);
  expect(family).toMatchObject({ user_id: user.id, client_id: client.id, generation: 1, revoked_at: null });
  const tokens = await database.db.selectFrom('refresh_tokens').select(['family_id', 'generation']).where('family_id', '=', family.id).execute();
  expect(tokens).toEqual([{ family_id: family.id, generation: 1 }]);
});

it('with a scope, an unknown token and a token of another client are refused as without one, and use nothing up', async () => {
  const { familyId } = await startSession();
  const parent = await database.db
    .selectFrom('refresh_tokens')
    .select('generation')
    .where('family_id', '=', familyId)
    .executeTakeFirstOrThrow();
  expect(parent.generation).toBe(1);
  const other = await createTestClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const login = await passwordGrant(service.app, other, user);
  const withScope = (client: { basic: string }, token: string) =>
    request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: token, scope: 'profile' });
  const stranger = await createTestClient(service);
  for (const res of [await withScope(other, 'A'.repeat(43)), await withScope(stranger, login.body.refresh_token)]) {
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
  }
  expect(service.logs.entries('refresh_failed').map((entry) => entry['reason'])).toEqual(expect.arrayContaining(['unknown_token', 'other_client']));
  expect((await withScope(other, login.body.refresh_token)).status).toBe(200);
});

it('a rotation whose statement and whose look-up both go unanswered (the database gone) logs its unknown outcome with what it knows', { timeout: 20_000 }, async () => {
  const { refresh } = await startSession();
  // Until the client is answered from memory (its cache holds entries only while the service
  // listens for client changes, which an earlier cut may have ended), so that the stall meets the rotation first.
  const clientReads = proxy.countSent('"clients"');
  await vi.waitFor(
    async () => {
      const seen = clientReads();
      expect((await refresh()).status).toBe(200);
      expect(clientReads()).toBe(seen);
    },
    { timeout: 10_000, interval: 100 },
  );
  const before = service.logs.entries('refresh_outcome_unknown').length;
  proxy.stall();
  try {
    const res = await refresh();
    expect(res.status).toBe(503);
    // The look-up of its family after the 503 gets no answer either: the event names no family.
    await vi.waitFor(() => expect(service.logs.entries('refresh_outcome_unknown').length).toBe(before + 1), { timeout: 10_000, interval: 100 });
  } finally {
    proxy.restore();
  }
  const [event] = service.logs.entries('refresh_outcome_unknown').slice(before);
  expect(event).toMatchObject({ level: 'warn', ip: '127.0.0.1' });
  expect(event).toHaveProperty('client_id');
  expect(event).not.toHaveProperty('family_id');
  expect(event).not.toHaveProperty('user_id');
});

describe('with a scope (the read first, then the compare-and-set)', () => {
  const withScope = (session: Awaited<ReturnType<typeof startSession>>) => () =>
    request(service.app).post('/token').type('form').set('Authorization', session.client.basic).send({ grant_type: 'refresh_token', refresh_token: session.parent, scope: 'profile' });

  it('a rotation that keeps losing answers busy after three compare-and-sets, as without one', async () => {
    const session = await startSession();
    const rotations = proxy.countSent('with "advanced" as');
    const rereads = proxy.countSent('for share');
    const res = await whileHeld(session.familyId, 'for share', withScope(session));
    expect(res.status).toBe(503);
    expect([rotations(), rereads()]).toEqual([3, 2]);
    expect((await withScope(session)()).status).toBe(200);
  });

  it('a compare-and-set whose answer is lost is logged as of unknown outcome at once, with its family; one PostgreSQL refused is not', { timeout: 20_000 }, async () => {
    const lost = await startSession();
    proxy.faultOn('with "advanced" as', 'lose-answer');
    let res: request.Response;
    try {
      res = await withScope(lost)();
    } finally {
      proxy.restore();
    }
    expect(res.status).toBe(503);
    // At once: the family was read before the statement.
    expect(service.logs.entries('refresh_outcome_unknown').filter((entry) => entry['family_id'] === lost.familyId)).toEqual([
      expect.objectContaining({ level: 'warn', client_id: lost.client.id, generation_presented: 1 }),
    ]);

    const refused = await startSession();
    const unknownBefore = service.logs.entries('refresh_outcome_unknown').length;
    await sql`create or replace function tessera_test_disk_full() returns trigger language plpgsql as $$
      begin raise exception 'could not extend file' using errcode = 'disk_full'; end $$`.execute(database.db);
    await sql`create trigger tessera_test_disk_full_scoped before insert on refresh_tokens for each row
      when (new.family_id = ${sql.lit(refused.familyId)}::uuid) execute function tessera_test_disk_full()`.execute(database.db);
    try {
      expect((await withScope(refused)()).status).toBe(503);
    } finally {
      await sql`drop trigger tessera_test_disk_full_scoped on refresh_tokens`.execute(database.db);
    }
    expect((await withScope(refused)()).status).toBe(200);
    expect(service.logs.entries('refresh_outcome_unknown').slice(unknownBefore)).toEqual([]);
  });
});
