import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import type { Env } from '../src/config.js';
import { announceReplicaSettings } from '../src/db/replica-settings.js';
import { insertSigningKey } from '../src/db/signing-keys.js';
import { createKeyRing, kekFingerprint, type KeyRing } from '../src/keys/key-encryption.js';
import { generateSigningKey } from '../src/keys/key-store.js';
import {
  announceKeySettings,
  KEY_CHANGE_LOCK,
  maintainSigningKeys,
  promotionDelaySeconds,
  reencryptSigningKeys,
  retentionSeconds,
  rotateSigningKey,
} from '../src/keys/lifecycle.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { ageSigningKeys, makeNextKeyDue } from './helpers/keys.js';
import { createTestClient, createTestUser, passwordGrant, startTestService, testEnv, type TestService } from './helpers/service.js';

// src/keys/lifecycle.ts, each decision once: which settings a rotation goes by, what the listing
// says, what maintenance does and says, and that every change waits for the others. The lifecycle
// walked through over time is ATTACKS.md G3 and I5 (test/security/g-secrets.test.ts,
// test/security/i-integrity.test.ts); replicas and the CLI together, test/keys.test.ts.

const SECOND = 1000;
let database: TestDatabase;
let service: TestService;
/** The CLI's environment: the service's database and keys, but a JWKS_MAX_AGE of its own, which no verifier holds. */
let cliEnv: Env;
/** The deployment's key-encryption key. */
const kek = randomBytes(32);
/** A ring the deployment does not have. */
const strangerRing: KeyRing = createKeyRing([randomBytes(32)]);

beforeAll(async () => {
  database = await createTestDatabase();
  const env = testEnv(database, { KEY_ENCRYPTION_KEYS: kek.toString('base64'), JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '2s' });
  service = await startTestService(database, { env });
  cliEnv = { ...env, JWKS_MAX_AGE: '10m', LOG_LEVEL: '' };
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

// Each test starts from the active key alone, signing, and from no announcement but the service's own.
beforeEach(async () => {
  await database.db.deleteFrom('signing_keys').where('state', '!=', 'active').execute();
  await database.db.deleteFrom('replica_settings').execute();
  await announceReplicaSettings(database.db, service.config);
  await service.deps.keys.reload(); // signing with the active key, as a replica would within KEY_RELOAD_INTERVAL
});

const lifecycleDeps = (ring: KeyRing = service.deps.keyRing) => ({ db: service.deps.db, config: service.config, log: service.deps.log, ring });
const maintain = (ring?: KeyRing, config = service.config) => maintainSigningKeys({ ...lifecycleDeps(ring), config });

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, cliEnv, { readStdin: async () => '', stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) }, service.clock);
  return { code, stdout, stderr };
}

const keyRow = (state: 'next' | 'active' | 'retired') => database.db.selectFrom('signing_keys').selectAll().where('state', '=', state).executeTakeFirstOrThrow();
const nextKeys = async () => (await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').execute()).map((row) => row.kid);
/** Seconds from a next key's creation to its activation: the delay decided when it was added. */
const storedDelay = async () => {
  const row = await keyRow('next');
  return (row.activates_at!.getTime() - row.created_at.getTime()) / SECOND;
};

async function signInAdmin(): Promise<{ id: string; authorization: string }> {
  const client = await createTestClient(service, { scopes: ['admin'] });
  const user = await createTestUser(service, { scopes: ['admin'] });
  const login = await passwordGrant(service.app, client, user, { scope: 'admin' });
  expect(login.status).toBe(200);
  return { id: user.id, authorization: `Bearer ${login.body.access_token as string}` };
}

describe('a rotation', () => {
  it("by a replica counts the replica's own settings, even once its announcement is gone; one next key at a time; audited", async () => {
    const admin = await signInAdmin();
    // Only another replica's smaller settings are in force.
    await database.db.deleteFrom('replica_settings').execute();
    await announceKeySettings(database.db, { jwksMaxAge: 0, keyReloadInterval: 1, accessTokenTtl: 60, keyRotationInterval: undefined });
    const rotate = () => request(service.app).post('/admin/keys/rotate').set('Authorization', admin.authorization).send({});
    const res = await rotate();
    expect(res.status).toBe(200);
    const row = await keyRow('next');
    expect(res.body).toEqual({ kid: row.kid, state: 'next', created_at: row.created_at.toISOString(), activated_at: null, retired_at: null, next_change_at: row.activates_at!.toISOString() });
    expect(await storedDelay()).toBe(promotionDelaySeconds(service.config));
    expect(promotionDelaySeconds(service.config)).toBe(60 + 2 * 2 + 5);
    expect(service.logs.entries('signing_key_created').filter((entry) => entry['kid'] === row.kid)).toEqual([
      expect.objectContaining({ activates_at: row.activates_at!.toISOString(), actor: admin.id, ip: '127.0.0.1' }),
    ]);

    const again = await rotate();
    expect({ status: again.status, body: again.body }).toEqual({
      status: 409,
      body: { error: 'invalid_request', error_description: `key ${row.kid} is already waiting to become active` },
    });
    expect(await nextKeys()).toEqual([row.kid]);
  });

  it('by the CLI goes by what the replicas announced, and by its own settings only when none has', async () => {
    expect((await cli('keys', 'rotate')).code).toBe(0);
    // The service announced JWKS_MAX_AGE 60s; the CLI's own 10m is no verifier's.
    expect(await storedDelay()).toBe(60 + 2 * 2 + 5);
    await database.db.deleteFrom('signing_keys').where('state', '=', 'next').execute();
    await database.db.deleteFrom('replica_settings').execute();
    expect((await cli('keys', 'rotate')).code).toBe(0);
    expect(await storedDelay()).toBe(600 + 2 * 2 + 5);
  });

  it('is refused, and nothing written, under keys that cannot open the active key', async () => {
    await expect(rotateSigningKey({ ...lifecycleDeps(strangerRing), serving: false }, 'test')).rejects.toThrow(
      "these KEY_ENCRYPTION_KEYS cannot open the active signing key: run this with the service's keys",
    );
    expect(await nextKeys()).toEqual([]);
  });
});

describe('the key listing', () => {
  it('lists the active, next and retired keys in that order, each with when it changes next', async () => {
    const first = (await keyRow('active')).kid;
    expect((await cli('keys', 'rotate')).code).toBe(0);
    await makeNextKeyDue(database.db);
    expect(await maintain()).toBe(true);
    expect((await cli('keys', 'rotate')).code).toBe(0);
    const [active, next, retired] = await Promise.all([keyRow('active'), keyRow('next'), keyRow('retired')]);
    expect(retired.kid).toBe(first);

    const { authorization } = await signInAdmin();
    const res = await request(service.app).get('/admin/keys').set('Authorization', authorization);
    expect(res.status).toBe(200);
    const retention = retentionSeconds(service.config);
    expect(retention).toBe(2 + 900 + 5);
    expect(res.body.items).toEqual([
      expect.objectContaining({ kid: active.kid, state: 'active', next_change_at: null }),
      expect.objectContaining({ kid: next.kid, state: 'next', next_change_at: next.activates_at!.toISOString() }),
      expect.objectContaining({ kid: first, state: 'retired', next_change_at: new Date(retired.retired_at!.getTime() + retention * SECOND).toISOString() }),
    ]);
  });
});

describe('maintenance', () => {
  it('says whether it changed anything: a promotion, a removal, a scheduled rotation, or nothing', async () => {
    const audited = (event: string, kid: string) => service.logs.entries(event).filter((entry) => entry['kid'] === kid);
    expect(await maintain()).toBe(false);
    const first = (await keyRow('active')).kid;
    expect((await cli('keys', 'rotate')).code).toBe(0);
    expect(await maintain()).toBe(false); // not due yet
    await makeNextKeyDue(database.db);
    const promoted = (await keyRow('next')).kid;
    expect(await maintain()).toBe(true);
    expect(audited('signing_key_activated', promoted)).toHaveLength(1);
    await ageSigningKeys(database.db, retentionSeconds(service.config) + 1);
    expect(await maintain()).toBe(true);
    expect(audited('signing_key_removed', first)).toHaveLength(1);
    expect(await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'retired').execute()).toEqual([]);
    expect(await maintain()).toBe(false);
    const scheduled = { ...service.config, keyRotationInterval: 3600 };
    expect(await maintain(undefined, scheduled)).toBe(false);
    await ageSigningKeys(database.db, 3600);
    expect(await maintain(undefined, scheduled)).toBe(true);
    const [added] = await nextKeys();
    expect(audited('signing_key_created', added!)).toEqual([expect.objectContaining({ actor: 'schedule' })]);
    expect(audited('signing_key_created', added!)[0]).not.toHaveProperty('ip');
  });

  it("announces this replica's settings, which then count for every decision", async () => {
    await database.db.deleteFrom('replica_settings').execute();
    expect(await maintain()).toBe(false);
    const announced = await database.db.selectFrom('replica_settings').select(['jwks_max_age', 'key_reload_interval', 'access_token_ttl']).execute();
    expect(announced).toEqual([{ jwks_max_age: 60, key_reload_interval: 2, access_token_ttl: 900 }]);
  });

  it('gives a next key of the previous release (no activation time) its time, and says which', async () => {
    const old = await generateSigningKey(service.deps.keyRing);
    await insertSigningKey(database.db, { ...old, state: 'next', created_at: new Date(service.clock.now()), activated_at: null, retired_at: null });
    expect(await maintain()).toBe(false);
    expect((await keyRow('next')).activates_at).not.toBeNull();
    expect(service.logs.entries().filter((entry) => entry['kid'] === old.kid)).toEqual([
      expect.objectContaining({ msg: 'a next signing key of the previous release gets its activation time' }),
    ]);
  });

  it('never promotes a next key it cannot open, and names it in an error', async () => {
    const active = (await keyRow('active')).kid;
    const sealed = await generateSigningKey(strangerRing);
    await insertSigningKey(database.db, { ...sealed, state: 'next', created_at: new Date(service.clock.now()), activated_at: null, retired_at: null });
    expect(await maintain()).toBe(false); // decides its activation time
    await makeNextKeyDue(database.db);
    expect(await maintain()).toBe(false);
    expect((await keyRow('active')).kid).toBe(active);
    expect(service.logs.entries().filter((entry) => entry['kid'] === sealed.kid && entry['level'] === 'error')).toEqual([
      expect.objectContaining({ msg: 'a next signing key cannot be opened with KEY_ENCRYPTION_KEYS: not promoting it' }),
    ]);
  });

  it('skips a scheduled rotation these keys cannot make, but lets any other failure of it through', async () => {
    const scheduled = { ...service.config, keyRotationInterval: 3600 };
    await ageSigningKeys(database.db, 3600);
    expect(await maintain(strangerRing, scheduled)).toBe(true);
    expect(await nextKeys()).toEqual([]);
    // A database that refuses the new key: that is no rotation made elsewhere, and must not pass for one.
    await sql`create function refuse_key() returns trigger language plpgsql as $$ begin raise exception 'no new keys today'; end $$`.execute(database.db);
    await sql`create trigger refuse_key before insert on signing_keys for each row execute function refuse_key()`.execute(database.db);
    try {
      await expect(maintain(undefined, scheduled)).rejects.toThrow('no new keys today');
    } finally {
      await sql`drop trigger refuse_key on signing_keys`.execute(database.db);
      await sql`drop function refuse_key()`.execute(database.db);
    }
  });
});

describe('re-encryption', () => {
  it('seals every key under the first key-encryption key of the ring, which alone then opens them all', async () => {
    expect((await cli('keys', 'rotate')).code).toBe(0);
    const newKek = randomBytes(32);
    const count = await reencryptSigningKeys(service.deps.db, createKeyRing([newKek, kek]));
    const rows = await database.db.selectFrom('signing_keys').selectAll().execute();
    expect(count).toBe(rows.length);
    expect(rows.map((row) => row.state).sort()).toEqual(['active', 'next']);
    const onlyNew = createKeyRing([newKek]);
    for (const row of rows) {
      expect(row.kek_id).toBe(kekFingerprint(newKek));
      expect(() => onlyNew.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid)).not.toThrow();
    }
    // Back under the deployment's key, for the service.
    expect(await reencryptSigningKeys(service.deps.db, createKeyRing([kek, newKek]))).toBe(rows.length);
  });
});

describe('the key-change lock', () => {
  /** Whether some session of this database is seen waiting for the key-change lock before `pending` settles. */
  async function seenWaitingBefore(pending: Promise<unknown>): Promise<boolean> {
    let settled = false;
    pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      const { rows } = await sql<{ waiting: number }>`
        select count(*)::int as waiting from pg_locks
        where locktype = 'advisory' and not granted and objid = ${KEY_CHANGE_LOCK}::bigint::oid
          and database = (select oid from pg_database where datname = current_database())`.execute(database.db);
      if (rows[0]!.waiting > 0) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  it.each([
    ['a rotation', () => rotateSigningKey({ ...lifecycleDeps(), serving: true }, 'test')],
    ['maintenance', () => maintain()],
    ['re-encryption', () => reencryptSigningKeys(service.deps.db, service.deps.keyRing)],
  ])('%s waits while another process holds it', async (_label, change) => {
    let pending: Promise<unknown> | undefined;
    await database.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${KEY_CHANGE_LOCK})`.execute(trx);
      pending = change();
      // It cannot finish while the lock is held: it is seen waiting first.
      expect(await seenWaitingBefore(pending)).toBe(true);
    });
    await pending;
  });
});
