import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import { type Kysely, sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { openPostgres } from '../src/db/connect.js';
import { migrateToLatest, readKnownMigrations } from '../src/db/migrate.js';
import type { Database, SigningKeyRow } from '../src/db/schema.js';
import { createKeyRing, kekFingerprint, KeyDecryptionError } from '../src/keys/key-encryption.js';
import { ensureSigningKey } from '../src/keys/key-store.js';
import { createLogger } from '../src/logger.js';
import { prepareDeps } from '../src/service.js';
import { createFakeClock } from './helpers/clock.js';
import { createTestDatabase, type TestDatabase, testKysely } from './helpers/database.js';
import { databaseNow } from './helpers/keys.js';
import { captureLogs } from './helpers/logs.js';
import { createTestClient, createTestUser, passwordGrant, startTestService, TEST_ARGON2, TEST_ISSUER, testEnv } from './helpers/service.js';

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);
const MIGRATION_FILE = /^(\d{14})_[a-z0-9]+(?:_[a-z0-9]+)*\.ts$/;

/** What the Migrator records for each file: its name without the extension. */
async function migrationNames(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((file) => file.endsWith('.ts')).sort().map((file) => file.slice(0, -3));
}

/** A pool of its own, as another replica would have. */
function openReplica(url: string): Kysely<Database> {
  return testKysely(url, 2);
}

/** Connected before the race starts, so both really start at the same moment. */
async function openReplicas(url: string, count: number): Promise<Kysely<Database>[]> {
  const replicas = Array.from({ length: count }, () => openReplica(url));
  await Promise.all(replicas.map((db) => sql`select 1`.execute(db)));
  return replicas;
}

async function columnsOf(db: Kysely<Database>): Promise<unknown[]> {
  const result = await sql<Record<string, unknown>>`
    select table_name, column_name, data_type, is_nullable, column_default
    from information_schema.columns where table_schema = 'public'
    order by table_name, column_name`.execute(db);
  return result.rows;
}

async function indexesOf(db: Kysely<Database>): Promise<unknown[]> {
  const result = await sql<Record<string, unknown>>`
    select tablename, indexname, indexdef from pg_indexes where schemaname = 'public' order by tablename, indexname`.execute(db);
  return result.rows;
}

async function signingKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().execute();
}

const newKek = () => randomBytes(32);

/** Migrated once, the ordinary way: the reference schema, and the database the key tests share. */
let database: TestDatabase;
const kek = newKek();

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe('migration files', () => {
  it('are named <14-digit UTC timestamp>_<snake_case name>.ts, with distinct timestamps in order', async () => {
    // Beside them only the rule they follow (migrations/README.md).
    const files = (await readdir(MIGRATIONS_DIR)).filter((file) => file !== 'README.md').sort();
    expect(files.length).toBeGreaterThan(0);
    const timestamps: string[] = [];
    for (const file of files) {
      const match = MIGRATION_FILE.exec(file);
      expect(match, file).not.toBeNull();
      const stamp = match![1]!;
      // A real date and time: 20261122000000 is 2026-11-22T00:00:00Z.
      const iso = `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(8, 10)}:${stamp.slice(10, 12)}:${stamp.slice(12, 14)}.000Z`;
      expect(new Date(iso).toISOString(), file).toBe(iso);
      timestamps.push(stamp);
    }
    // Sorting by name is sorting by time, and no two files claim the same moment.
    expect(new Set(timestamps).size).toBe(timestamps.length);
    expect([...timestamps].sort((a, b) => Number(a) - Number(b))).toEqual(timestamps);
  });
});

interface Column {
  readonly table_name: string;
  readonly column_name: string;
  readonly data_type: string;
  readonly is_nullable: string;
  readonly column_default: string | null;
}

describe('expand/contract (migrations/README.md)', () => {
  it('every migration after the first keeps every table and column as it was, and adds only nullable or defaulted columns to old tables', { timeout: 60_000 }, async () => {
    const fresh = await createTestDatabase({ migrate: false });
    try {
      const known = await readKnownMigrations();
      const names = Object.keys(known).sort();
      let before: Column[] = [];
      for (const [index, name] of names.entries()) {
        await migrateToLatest(fresh.db, Object.fromEntries(names.slice(0, index + 1).map((each) => [each, known[each]!])));
        const after = (await columnsOf(fresh.db)) as Column[];
        if (index > 0) {
          const key = (column: Column) => `${column.table_name}.${column.column_name}`;
          const now = new Map(after.map((column) => [key(column), column]));
          // Nothing the previous release reads or writes was dropped, renamed, retyped or made NOT NULL.
          const changed = before.filter((column) => {
            const same = now.get(key(column));
            return same === undefined || same.data_type !== column.data_type || same.is_nullable !== column.is_nullable;
          });
          expect(changed, name).toEqual([]);
          // Its inserts name none of the new columns of its tables: each must take NULL or a default.
          const oldTables = new Set(before.map((column) => column.table_name));
          const existing = new Set(before.map(key));
          const required = after.filter(
            (column) => oldTables.has(column.table_name) && !existing.has(key(column)) && column.is_nullable === 'NO' && column.column_default === null,
          );
          expect(required, name).toEqual([]);
        }
        before = after;
      }
    } finally {
      await fresh.drop();
    }
  });
});

describe('migrations under concurrency', () => {
  it('apply exactly once when two replicas migrate a fresh database at the same time', { timeout: 60_000 }, async () => {
    const fresh = await createTestDatabase({ migrate: false });
    const replicas = await openReplicas(fresh.url, 2);
    try {
      const outcomes = await Promise.all(replicas.map((db) => migrateToLatest(db)));

      // One replica applied every file, in order; the other waited on the lock and found nothing to do.
      const names = await migrationNames();
      expect(outcomes.map((outcome) => outcome.applied).sort((a, b) => a.length - b.length)).toEqual([[], names]);
      const recorded = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(fresh.db);
      expect(recorded.rows.map((row) => row.name)).toEqual(names);

      // The same schema as a database migrated by one process alone.
      expect(await columnsOf(fresh.db)).toEqual(await columnsOf(database.db));
      expect(await indexesOf(fresh.db)).toEqual(await indexesOf(database.db));

      expect(await migrateToLatest(replicas[0]!)).toEqual({ applied: [], unknown: [] });
    } finally {
      await Promise.all(replicas.map((db) => db.destroy()));
      await fresh.drop();
    }
  });
});

describe('signing keys', () => {
  /** The key the tests below read: made once, as a replica's first start makes it. */
  let row: SigningKeyRow;
  beforeAll(async () => {
    await ensureSigningKey(database.db, createKeyRing([kek]));
    row = (await signingKeys(database.db))[0]!;
  });

  it('are created exactly once when replicas start together on an empty key table', { timeout: 60_000 }, async () => {
    const empty = await createTestDatabase();
    try {
      expect(await signingKeys(empty.db)).toEqual([]);
      const before = await databaseNow(empty.db);
      const replicas = await openReplicas(empty.url, 2);
      try {
        // Two processes, each with its own ring from the same KEY_ENCRYPTION_KEYS and two callers each.
        await Promise.all(
          replicas.flatMap((db) => {
            const ring = createKeyRing([kek]);
            return [ensureSigningKey(db, ring), ensureSigningKey(db, ring)];
          }),
        );
      } finally {
        await Promise.all(replicas.map((db) => db.destroy()));
      }
      const rows = await signingKeys(empty.db);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ state: 'active', algorithm: 'RS256', retired_at: null, activates_at: null });
      // Stamped by the database's clock, as every time of the key lifecycle.
      expect(rows[0]!.activated_at).toEqual(rows[0]!.created_at);
      expect(rows[0]!.created_at.getTime()).toBeGreaterThanOrEqual(before);
      expect(rows[0]!.created_at.getTime()).toBeLessThanOrEqual(await databaseNow(empty.db));
    } finally {
      await empty.drop();
    }
  });

  it('keep the private key encrypted at rest, openable only with the key-encryption key', async () => {
    const ciphertext = Buffer.from(row.private_key_ciphertext, 'base64');
    expect(ciphertext.toString('base64')).toBe(row.private_key_ciphertext);
    expect(row.private_key_ciphertext).not.toMatch(/BEGIN|PRIVATE KEY/);
    // The DER of every RSA PKCS#8 key carries the rsaEncryption OID 1.2.840.113549.1.1.1.
    const rsaEncryptionOid = Buffer.from('06092a864886f70d010101', 'hex');
    expect(ciphertext.includes(rsaEncryptionOid)).toBe(false);
    // The key-encryption key is named by a fingerprint, never stored.
    expect(row.kek_id).toBe(kekFingerprint(kek));
    expect(row.kek_id).not.toContain(kek.toString('hex'));
    expect(row.private_key_ciphertext).not.toContain(kek.toString('base64'));

    const secret = { ciphertext: row.private_key_ciphertext, kekId: row.kek_id };
    const der = createKeyRing([kek]).decrypt(secret, row.kid);
    expect(ciphertext.includes(der.subarray(0, 32))).toBe(false);
    expect(ciphertext.includes(der.subarray(der.length - 32))).toBe(false);
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    expect(privateKey.asymmetricKeyType).toBe('rsa');
    expect(privateKey.asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(2048);

    // The decrypted private key is the one the published public key belongs to, and kid is its RFC 7638 thumbprint.
    const derived = createPublicKey(privateKey).export({ format: 'jwk' });
    expect(row.public_jwk).toEqual({ kty: 'RSA', n: derived.n, e: derived.e, kid: row.kid, use: 'sig', alg: 'RS256' });
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(row.public_jwk).not.toHaveProperty(member);
    expect(await calculateJwkThumbprint({ kty: 'RSA', n: derived.n!, e: derived.e! })).toBe(row.kid);

    // Another key-encryption key cannot open it, and the ciphertext is bound to its own kid.
    expect(() => createKeyRing([newKek()]).decrypt(secret, row.kid)).toThrow(KeyDecryptionError);
    expect(() => createKeyRing([kek]).decrypt(secret, `${row.kid}x`)).toThrow(KeyDecryptionError);
  });

  it('refuse to start with a KEY_ENCRYPTION_KEYS that does not open the stored key, naming the variable', async () => {
    const wrong = newKek().toString('base64');
    const config = Object.freeze({ ...loadConfig(testEnv(database, { KEY_ENCRYPTION_KEYS: wrong })), argon2: TEST_ARGON2 });
    const logs = captureLogs();
    // prepareDeps directly rather than startTestService, which would leave its pool open when start-up fails.
    const handle = openPostgres(database.url, createLogger('info', logs), { poolSize: 2 });
    try {
      const failure = await prepareDeps(config, handle, createLogger('info', logs), createFakeClock()).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(Error);
      const message = (failure as Error).message;
      expect(message).toMatch(/KEY_ENCRYPTION_KEYS/);
      expect(message).not.toContain(wrong);
      expect(message).not.toContain(kek.toString('base64'));
    } finally {
      await handle.close();
    }
    // A misconfigured replica must not "repair" the key table with a key of its own.
    expect(await signingKeys(database.db)).toEqual([row]);
  });

  it('start with the old key-encryption key as the second entry of the ring, and keep signing with the stored key', async () => {
    const ring = `${newKek().toString('base64')},${kek.toString('base64')}`;
    const service = await startTestService(database, { env: testEnv(database, { KEY_ENCRYPTION_KEYS: ring }) });
    try {
      expect(service.deps.keys.current().signing.kid).toBe(row.kid);
      const user = await createTestUser(service);
      const client = await createTestClient(service);
      const res = await passwordGrant(service.app, client, user);
      expect(res.status).toBe(200);
      const jwks = await request(service.app).get('/.well-known/jwks.json');
      const { protectedHeader } = await jwtVerify(res.body.access_token, createLocalJWKSet(jwks.body), {
        issuer: TEST_ISSUER,
        currentDate: new Date(service.clock.now()),
      });
      expect(protectedHeader.kid).toBe(row.kid);
    } finally {
      await service.close();
    }
    expect(await signingKeys(database.db)).toEqual([row]);
  });
});
