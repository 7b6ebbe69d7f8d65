import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { createAuditLog } from '../src/audit/writer.js';
import { openPostgres } from '../src/db/connect.js';
import { createLogger } from '../src/logger.js';
import { listen } from '../src/service.js';
import { captureLogs } from './helpers/logs.js';
import { authorizeParams, createBrowserClient, exchangeCode, pkce, signInForCode } from './helpers/signin.js';
import type { TestDatabase } from './helpers/database.js';
import { knownSecrets } from './helpers/secrets.js';
import {
  type AdminService,
  createTestClient,
  createTestUser,
  passwordGrant,
  startAdminService,
  startTestService,
  type TestClient,
  testEnv,
  type TestService,
  uniqueName,
} from './helpers/service.js';

let database: TestDatabase;
let service: TestService;
let env: ReturnType<typeof testEnv>;
/** A confidential gateway allowed `admin`, for the admin's token and the logins of these tests. */
let gateway: TestClient;
let admin: Awaited<ReturnType<typeof createTestUser>>;
let adminToken: string;
let started: AdminService | undefined;

beforeAll(async () => {
  started = await startAdminService({ scopes: ['profile'], defaultScopes: ['profile'] });
  ({ database, service, env, gateway, admin, adminToken } = started);
});
afterAll(() => started?.close());

async function login(user: { username: string; password: string }, scope?: string, client: TestClient = gateway) {
  const res = await passwordGrant(service.app, client, user, scope ? { scope } : {});
  expect(res.status).toBe(200);
  return res.body as { access_token: string; refresh_token: string };
}

interface AuditItem {
  id: string;
  time: string;
  type: string;
  actor: { type: string; id: string | null };
  subject: string | null;
  client_id: string | null;
  ip: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}
interface AuditPage {
  items: AuditItem[];
  next_cursor: string | null;
}

/** GET /admin/audit as the admin. */
function audit(query: Record<string, string> = {}, token = adminToken) {
  return request(service.app).get('/admin/audit').set('Authorization', `Bearer ${token}`).query(query);
}

async function events(query: Record<string, string>): Promise<AuditItem[]> {
  const res = await audit({ limit: '100', ...query });
  expect(res.status).toBe(200);
  return (res.body as AuditPage).items;
}

const invalid = (description: string) => ({ error: 'invalid_request', error_description: description });

/** `tessera <argv>` on this file's database, on the service's clock. */
async function cli(argv: readonly string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, env, { readStdin: async () => '', stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) }, service.clock);
  return { code, stdout, stderr };
}

/** Makes every insert into audit_events fail as a full disk would (SQLSTATE 53100), for the length of `work`. */
async function withAuditWritesFailing<T>(work: () => Promise<T>): Promise<T> {
  await sql`create or replace function refuse_audit() returns trigger language plpgsql as $$ begin raise exception 'no room for audit events' using errcode = '53100'; end $$`.execute(database.db);
  await sql`create trigger refuse_audit before insert on audit_events for each row execute function refuse_audit()`.execute(database.db);
  try {
    return await work();
  } finally {
    await sql`drop trigger refuse_audit on audit_events`.execute(database.db);
  }
}

async function auditRowsDropped(): Promise<number> {
  const text = (await request(service.app).get('/metrics')).text;
  return Number(/^tessera_audit_rows_dropped_total (\d+)$/m.exec(text)?.[1] ?? NaN);
}

describe('audit rows for each kind of event', () => {
  it('an admin change is a row at once, in its transaction: actor user (the admin), subject, ip and the request id', async () => {
    const username = uniqueName('created');
    const res = await request(service.app)
      .post('/admin/users')
      .set('Authorization', `Bearer ${adminToken}`)
      .set('X-Request-Id', 'audit-test-create-user')
      .send({ username, scopes: ['profile'] });
    expect(res.status).toBe(201);
    // No flush: the row was committed with the user.
    const rows = await events({ subject: res.body.id, type: 'user_created' });
    expect(rows).toEqual([
      {
        id: expect.stringMatching(/^\d+$/),
        time: new Date(service.clock.now()).toISOString(),
        type: 'user_created',
        actor: { type: 'user', id: admin.id },
        subject: res.body.id,
        client_id: null,
        ip: '127.0.0.1',
        request_id: 'audit-test-create-user',
        details: { scopes: ['profile'], roles: [], profile: [] },
      },
    ]);
  });

  it('a CLI change records actor cli with the OS user', async () => {
    const username = uniqueName('fromcli');
    const created = await cli(['users', 'create', username, '--json']);
    expect(created.code).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    const disabled = await cli(['users', 'disable', username]);
    expect(disabled.code).toBe(0);
    const rows = await events({ subject: id });
    expect(rows.map((row) => [row.type, row.actor, row.details])).toEqual([
      ['user_updated', { type: 'cli', id: userInfo().username }, { disabled: true, sessions_ended: 0 }],
      ['user_created', { type: 'cli', id: userInfo().username }, { scopes: [], roles: [], profile: [] }],
    ]);
    expect(rows.every((row) => row.ip === null && row.request_id === null)).toBe(true);
    // And the filter by actor finds them.
    const byCli = await events({ actor_type: 'cli', actor: userInfo().username, subject: id });
    expect(byCli).toHaveLength(2);
  });

  it('logins, failures and refreshes are batched: their rows appear once the buffer is flushed', async () => {
    const user = await createTestUser(service);
    const tokens = await login(user);
    const failed = await passwordGrant(service.app, gateway, { username: user.username, password: 'not-the-password' }).set('X-Request-Id', 'audit-test-failed');
    expect(failed.status).toBe(400);
    const refreshed = await request(service.app)
      .post('/token')
      .type('form')
      .set('Authorization', gateway.basic)
      .send({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(200);
    await service.deps.audit.flush();
    const rows = await events({ subject: user.id });
    expect(rows.map((row) => [row.type, row.actor, row.client_id])).toEqual([
      ['token_refreshed', { type: 'client', id: gateway.id }, gateway.id],
      ['login_failed', { type: 'client', id: gateway.id }, gateway.id],
      ['login_succeeded', { type: 'user', id: user.id }, gateway.id],
    ]);
    const failure = rows.find((row) => row.type === 'login_failed')!;
    expect(failure).toMatchObject({ ip: '127.0.0.1', request_id: 'audit-test-failed', details: { reason: 'wrong_password' } });
  });

  it('a refresh token reused: the revocation and its event in one transaction, no flush needed', async () => {
    const user = await createTestUser(service);
    const first = await login(user);
    const rotate = (token: string) =>
      request(service.app).post('/token').type('form').set('Authorization', gateway.basic).send({ grant_type: 'refresh_token', refresh_token: token });
    const second = (await rotate(first.refresh_token)).body as { refresh_token: string };
    expect((await rotate(second.refresh_token)).status).toBe(200);
    expect((await rotate(first.refresh_token)).status).toBe(400); // the grandparent: reuse
    const rows = await events({ subject: user.id, type: 'refresh_token_reuse_detected' });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: { type: 'client', id: gateway.id }, details: { generation_presented: 1, generation_current: 3 } });
  });

  it('a password change, a revocation, a key rotation and a denied admin request', async () => {
    const user = await createTestUser(service);
    const tokens = await login(user);
    const changed = await request(service.app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${tokens.access_token}`)
      .send({ current_password: user.password, new_password: `new-${randomBytes(9).toString('base64url')}` });
    expect(changed.status).toBe(204);
    expect(await events({ subject: user.id, type: 'password_changed' })).toEqual([
      expect.objectContaining({ actor: { type: 'user', id: user.id }, client_id: gateway.id, details: { sessions_ended: 1 } }),
    ]);

    const other = await createTestUser(service);
    const session = await login(other);
    const revoked = await request(service.app).post('/revoke').type('form').set('Authorization', gateway.basic).send({ token: session.refresh_token });
    expect(revoked.status).toBe(200);
    expect(await events({ subject: other.id, type: 'refresh_family_revoked' })).toEqual([
      expect.objectContaining({ actor: { type: 'client', id: gateway.id }, details: { reason: 'logout', family_id: expect.any(String) }, subject: other.id }),
    ]);

    const rotated = await request(service.app).post('/admin/keys/rotate').set('Authorization', `Bearer ${adminToken}`);
    expect(rotated.status).toBe(200);
    expect(await events({ subject: rotated.body.kid })).toEqual([
      expect.objectContaining({ type: 'signing_key_created', actor: { type: 'user', id: admin.id }, details: { activates_at: expect.any(String) } }),
    ]);

    const denied = await request(service.app).get('/admin/users').set('Authorization', `Bearer ${tokens.access_token}`).set('X-Request-Id', 'audit-test-denied');
    expect(denied.status).toBe(401); // the session ended with the password change
    await service.deps.audit.flush();
    const rows = await events({ type: 'admin_access_denied', actor_type: 'system' });
    expect(rows.find((row) => row.request_id === 'audit-test-denied')).toMatchObject({ details: { reason: 'invalid_token', path: '/admin/users' } });
  });
});

describe('browser sign-in', () => {
  it('a sign-in, its code and their session are rows in their transactions; the exchange and a replay follow', async () => {
    const user = await createTestUser(service);
    const client = await createBrowserClient(service);
    const { verifier, challenge } = pkce();
    const agent = request.agent(service.app);
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    // No flush: the browser session and the code were written with their rows.
    expect((await events({ subject: user.id })).map((row) => [row.type, row.actor])).toEqual([
      ['authorization_code_issued', { type: 'user', id: user.id }],
      ['browser_session_started', { type: 'user', id: user.id }],
    ]);
    expect((await exchangeCode(service.app, client, code, verifier)).status).toBe(200);
    const replay = await exchangeCode(service.app, client, code, verifier);
    expect(replay.status).toBe(400);
    // The replay's revocation wrote its row at once; the exchange comes with the next batch.
    expect(await events({ subject: user.id, type: 'authorization_code_reuse_detected' })).toEqual([
      expect.objectContaining({ actor: { type: 'client', id: client.id }, client_id: client.id, details: { family_id: expect.any(String) } }),
    ]);
    await service.deps.audit.flush();
    expect(await events({ subject: user.id, type: 'authorization_code_exchanged' })).toEqual([
      expect.objectContaining({ actor: { type: 'client', id: client.id }, details: { family_id: expect.any(String), session_id: expect.any(String) } }),
    ]);
  });
});

describe('a limit tripped', () => {
  it('is a row with actor system, the address, and the layer', async () => {
    const limited = await startTestService(database, {
      env: { ...env, LOGIN_IP_LIMIT: '1', RATE_LIMIT_PREFIX: `tessera-test:${database.name}:${uniqueName('limited')}:` },
    });
    try {
      const user = await createTestUser(limited);
      const client = await createTestClient(limited);
      expect((await passwordGrant(limited.app, client, user)).status).toBe(200);
      const refused = await passwordGrant(limited.app, client, user).set('X-Request-Id', 'audit-test-limited');
      expect(refused.status).toBe(429);
    } finally {
      await limited.close(); // flushes its batch before its database closes
    }
    const rows = (await events({ type: 'rate_limit_tripped' })).filter((row) => row.request_id === 'audit-test-limited');
    expect(rows).toEqual([expect.objectContaining({ actor: { type: 'system', id: null }, ip: '127.0.0.1', subject: null, details: { layer: 'login_ip' } })]);
  });
});

describe('the same transaction as the change', () => {
  it('a change whose audit row cannot be written is not made: 503, nothing half-written', async () => {
    const name = uniqueName('role');
    const res = await withAuditWritesFailing(() =>
      request(service.app).post('/admin/roles').set('Authorization', `Bearer ${adminToken}`).send({ name, scopes: ['profile'] }),
    );
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' });
    const role = await request(service.app).get(`/admin/roles/${name}`).set('Authorization', `Bearer ${adminToken}`);
    expect(role.status).toBe(404);
  });

  it('a change that is refused and rolled back leaves no row', async () => {
    // Taking every role from the acting admin would take their admin scope: 409, rolled back
    // after the change itself ran.
    const res = await request(service.app).patch(`/admin/users/${admin.id}`).set('Authorization', `Bearer ${adminToken}`).send({ roles: [] });
    expect(res.status).toBe(409);
    expect(await events({ subject: admin.id, type: 'user_updated' })).toEqual([]);
    const createdBefore = (await events({ actor: admin.id, type: 'user_created' })).length;
    const unknownRole = await request(service.app)
      .post('/admin/users')
      .set('Authorization', `Bearer ${adminToken}`)
      .send({ username: uniqueName('norole'), roles: [uniqueName('nosuchrole')] });
    expect(unknownRole.status).toBe(400);
    expect(await events({ actor: admin.id, type: 'user_created' })).toHaveLength(createdBefore);
  });
});

describe('batched rows', () => {
  it('a batched write that fails fails no request: it is logged and counted', async () => {
    const user = await createTestUser(service);
    await service.deps.audit.flush(); // what other tests left buffered goes first
    const before = await auditRowsDropped();
    await withAuditWritesFailing(async () => {
      const res = await passwordGrant(service.app, gateway, { username: user.username, password: 'wrong-password-here' });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
      await service.deps.audit.flush();
    });
    expect(await auditRowsDropped()).toBe(before + 1);
    expect(service.logs.entries().some((entry) => entry['msg'] === 'could not write audit events to the database: their log lines stand for them')).toBe(true);
    expect(await events({ subject: user.id })).toEqual([]);
    // The log line was written all the same.
    expect(service.logs.entries('login_failed').some((entry) => entry['user_id'] === user.id)).toBe(true);
  });

  it('while the database is down, at most maxBuffered rows wait in memory: the rest are dropped and counted', async () => {
    // A real PostgreSQL address where nothing listens: every batch fails to connect.
    const logs = captureLogs();
    const log = createLogger('info', logs);
    const down = openPostgres('postgres://postgres@127.0.0.1:1/tessera', log, { poolSize: 1 });
    let dropped = 0;
    const writer = createAuditLog(
      { db: down.db, log, clock: service.clock, rowsDropped: (count) => (dropped += count) },
      { intervalMs: 60_000, maxRows: 2, maxBuffered: 5 },
    );
    try {
      for (let i = 0; i < 12; i++) writer.record('login_failed', { reason: 'wrong_password' }, { actor: { type: 'client', id: 'c' } });
      await writer.close();
    } finally {
      await down.close();
    }
    expect(dropped).toBe(12);
    expect(logs.entries('login_failed')).toHaveLength(12); // every log line was written all the same
    const failures = logs.entries().filter((entry) => entry['msg'] === 'could not write audit events to the database: their log lines stand for them');
    // Batches of 2 were tried while no more than 5 waited; the others never reached a batch.
    const attempted = failures.reduce((sum, entry) => sum + (entry['rows'] as number), 0);
    expect(failures.length).toBeGreaterThan(0);
    expect(attempted).toBeGreaterThanOrEqual(2);
    expect(attempted).toBeLessThanOrEqual(6);
  });

  it('a graceful shutdown writes what is buffered before the database closes', async () => {
    const replica = await startTestService(database, { env: { ...env, PORT: '0', HOST: '127.0.0.1' } });
    const user = await createTestUser(replica);
    const client = await createTestClient(replica);
    const running = await listen(replica.deps, () => replica.close());
    const { port } = running.server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: client.basic },
      body: new URLSearchParams({ grant_type: 'password', username: user.username, password: 'wrong-password-here' }),
    });
    expect(res.status).toBe(400);
    await running.close(); // closes the replica's database too
    expect((await events({ subject: user.id })).map((row) => row.type)).toEqual(['login_failed']);
  });
});

describe('GET /admin/audit: filters and paging', () => {
  it('pages newest first with an opaque cursor, without a duplicate or a gap, ties broken by id', async () => {
    const prefix = uniqueName('paged');
    // Seven changes at the same instant (the fake clock stands still), two more a second later.
    for (let i = 0; i < 9; i++) {
      if (i === 7) service.clock.advance(1000);
      const res = await request(service.app).post('/admin/roles').set('Authorization', `Bearer ${adminToken}`).send({ name: `${prefix}-${i}` });
      expect(res.status).toBe(201);
    }
    const all = (await events({ type: 'role_changed' })).filter((row) => row.subject?.startsWith(prefix));
    expect(all.map((row) => row.subject)).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 0].map((i) => `${prefix}-${i}`));

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const res = await audit({ type: 'role_changed', actor: admin.id, since: all[8]!.time, limit: '4', ...(cursor ? { cursor } : {}) });
      expect(res.status).toBe(200);
      const page = res.body as AuditPage;
      seen.push(...page.items.map((row) => row.subject!));
      cursor = page.next_cursor ?? undefined;
      pages += 1;
    } while (cursor !== undefined && pages < 10);
    const ours = seen.filter((subject) => subject.startsWith(prefix));
    expect(ours).toEqual(all.map((row) => row.subject));
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('filters by type (several), actor type, actor, subject, client and time range', async () => {
    const user = await createTestUser(service);
    const client = await createTestClient(service, { scopes: ['profile'] });
    const startedAt = service.clock.now();
    await login(user, undefined, client);
    service.clock.advance(60_000);
    const bad = await passwordGrant(service.app, client, { username: user.username, password: 'wrong-password-here' });
    expect(bad.status).toBe(400);
    await service.deps.audit.flush();
    const iso = (ms: number) => new Date(ms).toISOString();

    expect((await events({ client: client.id })).map((row) => row.type)).toEqual(['login_failed', 'login_succeeded']);
    expect((await events({ client: client.id, type: 'login_failed' })).map((row) => row.type)).toEqual(['login_failed']);
    expect((await events({ client: client.id, type: 'login_failed,login_succeeded' })).map((row) => row.type)).toEqual(['login_failed', 'login_succeeded']);
    expect((await events({ client: client.id, actor_type: 'user' })).map((row) => row.type)).toEqual(['login_succeeded']);
    expect((await events({ client: client.id, actor: client.id })).map((row) => row.type)).toEqual(['login_failed']);
    expect((await events({ subject: user.id, until: iso(startedAt + 60_000) })).map((row) => row.type)).toEqual(['login_succeeded']);
    expect((await events({ subject: user.id, since: iso(startedAt + 60_000) })).map((row) => row.type)).toEqual(['login_failed']);
    expect(await events({ subject: user.id, since: iso(startedAt + 120_000) })).toEqual([]);
  });

  it.each([
    [{ cursor: 'not-a-cursor' }, 'cursor must be the next_cursor of a previous page'],
    [{ type: 'Login Failed' }, 'type must be one or more event names (such as login_failed), separated by commas'],
    [{ actor_type: 'robot' }, 'actor_type must be one of: user, client, cli, system'],
    [{ since: 'yesterday' }, 'since must be an RFC 3339 time such as 2026-12-06T10:00:00Z'],
    [{ until: '2026-13-45T99:00:00Z' }, 'until must be an RFC 3339 time such as 2026-12-06T10:00:00Z'],
    [{ since: '2026-12-06T10:00:00Z', until: '2026-12-06T10:00:00Z' }, 'since must be before until'],
    [{ subject: 'a\u0001b' }, 'subject must be 1 to 255 characters without control characters'],
    [{ actor: '' }, 'actor must be 1 to 255 characters without control characters'],
    [{ limit: '0' }, 'limit must be an integer from 1 to 100'],
    [{ user: 'x' }, 'unknown query parameter: user'],
  ])('%o is a 400 that says what is wrong', async (query, description) => {
    const res = await audit(query as Record<string, string>);
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalid(description));
  });

  it('a cursor edited, cut short or taken from another list is a 400', async () => {
    // Two events, and two users besides the admin, whatever ran before: both lists have a next page.
    for (let i = 0; i < 2; i++) {
      const created = await request(service.app).post('/admin/users').set('Authorization', `Bearer ${adminToken}`).send({ username: uniqueName('paged') });
      expect(created.status).toBe(201);
    }
    await service.deps.audit.flush();
    const first = await audit({ limit: '1' });
    const cursor = (first.body as AuditPage).next_cursor!;
    expect(cursor).toEqual(expect.any(String));
    const [payload, mac] = cursor.split('.') as [string, string];
    const position = JSON.parse(Buffer.from(payload, 'base64url').toString()) as string[];
    const moved = Buffer.from(JSON.stringify([position[0], '1'])).toString('base64url');
    const flipped = `${payload}.${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`;
    const users = await request(service.app).get('/admin/users').set('Authorization', `Bearer ${adminToken}`).query({ limit: '1' });
    for (const bad of [`${moved}.${mac}`, flipped, cursor.slice(0, -2), users.body.next_cursor as string]) {
      const res = await audit({ cursor: bad });
      expect(res.status).toBe(400);
      expect(res.body).toEqual(invalid('cursor must be the next_cursor of a previous page'));
    }
  });

  it('needs the admin scope', async () => {
    const user = await createTestUser(service);
    const { access_token } = await login(user);
    const res = await audit({}, access_token);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'insufficient_scope', error_description: 'this endpoint needs an access token with the admin scope' });
  });
});

describe('tessera audit list', () => {
  it('lists with the same filters and cursor, as a table or --json', async () => {
    const prefix = uniqueName('clirole');
    for (let i = 0; i < 3; i++) expect((await cli(['roles', 'create', `${prefix}-${i}`])).code).toBe(0);
    const page1 = await cli(['audit', 'list', '--type', 'role_changed', '--actor-type', 'cli', '--limit', '2', '--json']);
    expect(page1.code).toBe(0);
    const first = JSON.parse(page1.stdout) as AuditPage;
    expect(first.items.map((row) => row.subject)).toEqual([`${prefix}-2`, `${prefix}-1`]);
    expect(first.next_cursor).toEqual(expect.any(String));
    const page2 = await cli(['audit', 'list', '--type', 'role_changed', '--actor-type', 'cli', '--limit', '2', '--cursor', first.next_cursor!, '--json']);
    expect((JSON.parse(page2.stdout) as AuditPage).items.map((row) => row.subject)).toContain(`${prefix}-0`);
    // The admin API takes the CLI's cursor: one list, one form.
    const api = await audit({ type: 'role_changed', actor_type: 'cli', limit: '2', cursor: first.next_cursor! });
    expect(api.status).toBe(200);
    expect((api.body as AuditPage).items[0]!.subject).toBe(`${prefix}-0`);

    const table = await cli(['audit', 'list', '--subject', `${prefix}-1`]);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^TIME\s+TYPE\s+ACTOR\s+SUBJECT\s+CLIENT\s+IP\s+DETAILS$/);
    expect(table.stdout).toContain(`role_changed  cli:${userInfo().username}  ${prefix}-1`);
  });

  it('a bad filter or cursor is a usage error (exit 2) that names the option', async () => {
    expect(await cli(['audit', 'list', '--actor-type', 'robot'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: --actor-type must be one of: user, client, cli, system\n(see tessera audit list --help)\n',
    });
    expect(await cli(['audit', 'list', '--cursor', 'garbage.x'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: --cursor must be the next_cursor of a previous page\n(see tessera audit list --help)\n',
    });
  });

  it('tessera help audit and audit list --help answer without touching anything', async () => {
    const dataDir = join(tmpdir(), `tessera-audit-help-${randomBytes(4).toString('hex')}`);
    const noDatabase = { DATA_DIR: dataDir };
    const help = async (argv: string[]) => {
      let stdout = '';
      const code = await runCli(argv, noDatabase, { readStdin: () => Promise.reject(new Error('read stdin')), stdout: (t) => (stdout += t), stderr: () => undefined });
      expect(code).toBe(0);
      return stdout;
    };
    expect(await help(['help', 'audit'])).toContain('list  list audit events, newest first');
    expect(await help(['help'])).toMatch(/^ {2}audit list +list audit events, newest first$/m);
    expect(await help(['help', 'purge'])).toContain('AUDIT_RETENTION');
    for (const argv of [['audit', 'list', '--help'], ['help', 'audit', 'list']]) {
      const text = await help(argv);
      expect(text).toContain('tessera audit list');
      for (const option of ['--type', '--actor-type', '--actor', '--subject', '--client', '--since', '--until', '--limit', '--cursor', '--json']) expect(text).toContain(option);
    }
    expect(existsSync(dataDir)).toBe(false); // no database, no directory, nothing
  });
});

describe('retention', () => {
  it('AUDIT_RETENTION defaults to 90 days, is checked at start-up with the rest', () => {
    expect(loadConfig({}).auditRetention).toBe(90 * 86_400);
    expect(loadConfig({ AUDIT_RETENTION: '30d' }).auditRetention).toBe(30 * 86_400);
    const check = (value: string) => {
      try {
        loadConfig({ AUDIT_RETENTION: value, PORT: 'x' });
      } catch (error) {
        return (error as ConfigError).problems;
      }
      return [];
    };
    expect(check('soon')).toEqual([
      'PORT must be a whole number from 0 to 65535 (got "x")',
      'AUDIT_RETENTION must be a duration such as 15m, 14d or 10s, from 86400s to 3650d (got "soon")',
    ]);
    expect(check('1h')).toContain('AUDIT_RETENTION must be a duration such as 15m, 14d or 10s, from 86400s to 3650d (got "1h")');
  });

  it('tessera purge deletes events older than AUDIT_RETENTION (on the fake clock) and keeps the rest', async () => {
    const now = service.clock.now();
    const old = uniqueName('oldrole');
    const recent = uniqueName('newrole');
    try {
      service.clock.set(now - 91 * 86_400_000);
      expect((await cli(['roles', 'create', old])).code).toBe(0);
      service.clock.set(now - 89 * 86_400_000);
      expect((await cli(['roles', 'create', recent])).code).toBe(0);
    } finally {
      service.clock.set(now);
    }
    expect(await events({ subject: old })).toHaveLength(1);
    const purged = await cli(['purge', '--json']);
    expect(purged.code).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({ families_deleted: expect.any(Number), reset_tokens_deleted: expect.any(Number), audit_events_deleted: 1 });
    expect(await events({ subject: old })).toEqual([]);
    expect(await events({ subject: recent })).toHaveLength(1);
  });
});

describe('no secret in the details', () => {
  it('no row holds a password, token, secret or hash this file ever used', async () => {
    // Changes that carry secrets: a generated password, a client secret, a password reset.
    const created = await request(service.app).post('/admin/users').set('Authorization', `Bearer ${adminToken}`).send({ username: uniqueName('secretive') });
    expect(created.status).toBe(201);
    const reset = await request(service.app).post(`/admin/users/${created.body.id}/password`).set('Authorization', `Bearer ${adminToken}`).send({ password: `set-${randomBytes(9).toString('base64url')}` });
    expect(reset.status).toBe(200);
    const client = await request(service.app).post('/admin/clients').set('Authorization', `Bearer ${adminToken}`).send({ scopes: ['profile'] });
    expect(client.status).toBe(201);
    expect((await request(service.app).post(`/admin/clients/${client.body.id}/secret`).set('Authorization', `Bearer ${adminToken}`)).status).toBe(200);
    await service.deps.audit.flush();

    const rows = await sql<{ row: string }>`select row_to_json(a)::text as row from audit_events a`.execute(database.db);
    // At least the four changes above, whatever ran before (and, in file order, every other test's rows).
    expect(rows.rows.length).toBeGreaterThanOrEqual(4);
    const secrets = [...knownSecrets().keys(), created.body.password as string, client.body.client_secret as string];
    for (const { row } of rows.rows) {
      for (const secret of secrets) expect(row, 'an audit row holds a secret').not.toContain(secret);
      expect(row).not.toMatch(/"[a-z_]*(password|secret|token|hash)"\s*:\s*"(?!\[redacted\])/);
      expect(row).not.toMatch(/\$argon2/);
    }
  });
});
