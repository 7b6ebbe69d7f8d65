import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Kysely, type Migration, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest, readKnownMigrations } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { freePort, logLines, runTessera, startTessera, stopAll, waitUntilReady } from './helpers/process.js';
import { createTestClient, createTestUser, fetchPasswordGrant, startTestService, testEnv } from './helpers/service.js';

// Expand/contract (DESIGN.md, "Running in production"): after a newer release migrated the
// database, this release still starts and serves on it (a rollback, or an old pod restarting during
// a rollout), and `tessera migrate status` names what it does not know. A database older than this
// release needs is refused by whatever may not migrate it.

/** The one migration the "newer release" has beyond this one's: an expand step, as the rule allows. */
const NEWER = '29991231000000_user_nickname';
const newerMigration: Migration = {
  up: (db: Kysely<any>) => db.schema.alterTable('users').addColumn('nickname', 'text').execute(),
};

let known: Record<string, Migration>;
let names: string[];
const databases: TestDatabase[] = [];

beforeAll(async () => {
  known = await readKnownMigrations();
  names = Object.keys(known).sort();
});
afterAll(async () => {
  await stopAll();
  await Promise.all(databases.map((database) => database.drop()));
});

async function freshDatabase(): Promise<TestDatabase> {
  const database = await createTestDatabase({ migrate: false });
  databases.push(database);
  return database;
}

/** The environment `tessera` runs with against `database`. */
function settingsFor(database: TestDatabase): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'], ...testEnv(database, { HOST: '127.0.0.1', KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64'), SHUTDOWN_DELAY: '0s' }) };
}

/** `migrate status` in text: one [migration, status] pair a line after the header. */
function statusRows(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/ {2,}/));
}

describe('a database a newer release migrated', () => {
  let database: TestDatabase;
  let settings: NodeJS.ProcessEnv;

  beforeAll(async () => {
    database = await freshDatabase();
    settings = settingsFor(database);
    // The newer build: this release's migrations and one more.
    const newer = await migrateToLatest(database.db, { ...known, [NEWER]: newerMigration });
    expect(newer).toEqual({ applied: [...names, NEWER], unknown: [] });
  });

  it('this release starts on it, logs a warning naming the unknown migration, and serves tokens', { timeout: 90_000 }, async () => {
    // Users and clients made by this release in-process: it starts there too, and warns the same.
    const seeding = await startTestService(database, { env: settings });
    const user = await createTestUser(seeding);
    const client = await createTestClient(seeding);
    await seeding.close();
    const warnings = seeding.logs.entries().filter((entry) => entry['level'] === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        migrations: [NEWER],
        msg: 'the database has migrations from a newer release that this one does not know: serving without them',
      }),
    ]);

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = startTessera(['serve'], { ...settings, PORT: String(port), ISSUER: base });
    await waitUntilReady(server, base);
    const res = await fetchPasswordGrant(base, client, user);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ token_type: 'Bearer', expires_in: 900, access_token: expect.any(String) });

    const logged = logLines(server.stdout());
    expect(logged.filter((line) => line['level'] === 'warn').map((line) => ({ msg: line['msg'], migrations: line['migrations'] }))).toEqual([
      { msg: 'the database has migrations from a newer release that this one does not know: serving without them', migrations: [NEWER] },
    ]);
    // Nothing was applied, and the newer release's column is still there.
    expect(logged.some((line) => line['msg'] === 'migrations applied')).toBe(false);
    const columns = await sql<{ column_name: string }>`
      select column_name from information_schema.columns where table_name = 'users' and column_name = 'nickname'`.execute(database.db);
    expect(columns.rows).toEqual([{ column_name: 'nickname' }]);

    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it('`migrate status` lists the unknown migration and exits 0, in text and in JSON', { timeout: 60_000 }, async () => {
    const text = await runTessera(['migrate', 'status'], settings);
    expect(text).toMatchObject({ code: 0, stderr: '' });
    expect(statusRows(text.stdout)).toEqual([['MIGRATION', 'STATUS'], ...names.map((name) => [name, 'applied']), [NEWER, 'unknown']]);

    const json = await runTessera(['migrate', 'status', '--json'], settings);
    expect(json).toEqual({ code: 0, stdout: `${JSON.stringify({ applied: names, pending: [], unknown: [NEWER] })}\n`, stderr: '' });
  });

  it('`migrate` has nothing to do and leaves the unknown migration alone', { timeout: 60_000 }, async () => {
    expect(await runTessera(['migrate'], settings)).toEqual({ code: 0, stdout: 'no pending migrations\n', stderr: '' });
    const recorded = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(database.db);
    expect(recorded.rows.map((row) => row.name)).toEqual([...names, NEWER]);
  });
});

describe('a database older than this release needs', () => {
  let database: TestDatabase;
  let settings: NodeJS.ProcessEnv;
  let last: string;

  beforeAll(async () => {
    database = await freshDatabase();
    settings = settingsFor(database);
    // The previous release: every migration but this release's last.
    last = names.at(-1)!;
    const previous = Object.fromEntries(Object.entries(known).filter(([name]) => name !== last));
    await migrateToLatest(database.db, previous);
  });

  it('is refused by a command that may not migrate it, then `migrate status` exits 1 until `migrate` ran', { timeout: 60_000 }, async () => {
    expect(await runTessera(['users', 'list'], settings)).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: the database lacks migrations this release needs (${last}): run tessera migrate first\n`,
    });

    const pendingError = 'error: 1 pending migration(s): run tessera migrate (tessera serve also applies them)\n';
    const text = await runTessera(['migrate', 'status'], settings);
    expect(text).toMatchObject({ code: 1, stderr: pendingError });
    expect(statusRows(text.stdout)).toEqual([['MIGRATION', 'STATUS'], ...names.map((name) => [name, name === last ? 'pending' : 'applied'])]);
    const json = await runTessera(['migrate', 'status', '--json'], settings);
    expect(json).toEqual({
      code: 1,
      stdout: `${JSON.stringify({ applied: names.filter((name) => name !== last), pending: [last], unknown: [] })}\n`,
      stderr: pendingError,
    });

    expect(await runTessera(['migrate'], settings)).toEqual({ code: 0, stdout: `applied: ${last}\n`, stderr: '' });
    expect(await runTessera(['migrate', 'status', '--json'], settings)).toEqual({
      code: 0,
      stdout: `${JSON.stringify({ applied: names, pending: [], unknown: [] })}\n`,
      stderr: '',
    });
    expect(await runTessera(['users', 'list', '--json'], settings)).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
  });
});

describe('`migrate status` on the embedded database', () => {
  it('looks without migrating, and without making the key-encryption key', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-status-'));
    try {
      const env = { PATH: process.env['PATH'], DATA_DIR: join(dir, 'data') };
      expect(await runTessera(['migrate', 'status', '--json'], env)).toEqual({
        code: 1,
        stdout: `${JSON.stringify({ applied: [], pending: names, unknown: [] })}\n`,
        stderr: `error: ${names.length} pending migration(s): run tessera migrate (tessera serve also applies them)\n`,
      });
      expect(await readdir(join(dir, 'data'))).toEqual(['pgdata']);
      expect(await runTessera(['migrate'], env)).toEqual({ code: 0, stdout: `applied: ${names.join(', ')}\n`, stderr: '' });
      expect(await runTessera(['migrate', 'status', '--json'], env)).toMatchObject({ code: 0, stdout: `${JSON.stringify({ applied: names, pending: [], unknown: [] })}\n` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
