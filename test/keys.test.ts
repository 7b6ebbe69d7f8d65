import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { runCli } from '../src/cli/run.js';
import { insertSigningKey } from '../src/db/signing-keys.js';
import { createKeyRing, kekFingerprint } from '../src/keys/key-encryption.js';
import { generateSigningKey } from '../src/keys/key-store.js';
import { maintainSigningKeys, promotionDelaySeconds, retentionSeconds } from '../src/keys/lifecycle.js';
import { startKeyMaintenance } from '../src/service.js';
import { createFakeClock, type FakeClock } from './helpers/clock.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { ageSigningKeys, kidOfNewToken, makeNextKeyDue } from './helpers/keys.js';
import { startTestService, testEnv, type TestService } from './helpers/service.js';

let database: TestDatabase;
let env: Env;
let service: TestService;
let clock: FakeClock;
let oldKek: string;

// Each test on a database, key set and clock of its own: a rotation, a pending next key or a
// re-encryption left by one test would decide the next one's outcome in another order.
beforeEach(async () => {
  clock = createFakeClock();
  oldKek = randomBytes(32).toString('base64');
  database = await createTestDatabase();
  env = testEnv(database, { KEY_ENCRYPTION_KEYS: oldKek, JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '1s' });
  service = await startTestService(database, { env, clock });
});
afterEach(async () => {
  await service?.close();
  await database?.drop();
});

const SECOND = 1000;

async function cli(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { ...env, LOG_LEVEL: '' }, { readStdin: async () => '', stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) }, clock);
  return { code, stdout, stderr };
}

const maintain = async (target: TestService = service) => {
  await maintainSigningKeys({ ...target.deps, ring: target.deps.keyRing });
  await target.deps.keys.reload();
};

describe('the key lifecycle: next -> active -> retired -> removed', () => {
  // The walk through the states itself (published before it signs, the retired key kept until its
  // tokens expire) is ATTACKS.md G3, in test/security/g-secrets.test.ts.
  it('only one next key at a time', async () => {
    expect((await cli('keys', 'rotate')).code).toBe(0);
    const again = await cli('keys', 'rotate');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: key \S+ is already waiting to become active\n$/);
    await makeNextKeyDue(database.db);
    await maintain();
  });

  it('a promotion is done by exactly one of several replicas', async () => {
    const second = await startTestService(database, { env, clock });
    try {
      expect((await cli('keys', 'rotate')).code).toBe(0);
      await makeNextKeyDue(database.db);
      const before = service.logs.entries('signing_key_activated').length + second.logs.entries('signing_key_activated').length;
      await Promise.all([maintain(service), maintain(second), maintain(service), maintain(second)]);
      const after = service.logs.entries('signing_key_activated').length + second.logs.entries('signing_key_activated').length;
      expect(after - before).toBe(1);
      const active = await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'active').execute();
      expect(active).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it('KEY_ROTATION_INTERVAL starts a rotation by itself', async () => {
    const auto = await startTestService(database, { env: { ...env, KEY_ROTATION_INTERVAL: '2h' }, clock });
    try {
      const count = async () => (await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').execute()).length;
      await maintain(auto);
      expect(await count()).toBe(0);
      // The active key's age is the database's to measure: the service's clock moving does nothing.
      clock.advance(3 * 3600 * SECOND);
      await maintain(auto);
      expect(await count()).toBe(0);
      clock.advance(-3 * 3600 * SECOND);
      await ageSigningKeys(database.db, 2 * 3600);
      await maintain(auto);
      expect(await count()).toBe(1);
      expect(auto.logs.entries('signing_key_created')).toEqual([expect.objectContaining({ actor: 'schedule' })]);
      await makeNextKeyDue(database.db);
      await maintain(auto);
      expect(await count()).toBe(0);
    } finally {
      await auto.close();
    }
  });
});

describe('one key set for all replicas', () => {
  it('a rotation through the CLI reaches both instances within KEY_RELOAD_INTERVAL: same kid, same ETag', async () => {
    const second = await startTestService(database, { env, clock });
    const loops = [startKeyMaintenance(service.deps), startKeyMaintenance(second.deps)];
    try {
      expect((await cli('keys', 'rotate')).code).toBe(0);
      await makeNextKeyDue(database.db);
      const target = (await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').executeTakeFirstOrThrow()).kid;
      // Documented bound: one KEY_RELOAD_INTERVAL (1 s here) for the promotion, one more to reload.
      const deadline = Date.now() + 2 * service.config.keyReloadInterval * SECOND + 2 * SECOND;
      while ((service.deps.keys.current().signing.kid !== target || second.deps.keys.current().signing.kid !== target) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await kidOfNewToken(service)).toBe(target);
      expect(await kidOfNewToken(second)).toBe(target);
      const [a, b] = await Promise.all([request(service.app).get('/.well-known/jwks.json'), request(second.app).get('/.well-known/jwks.json')]);
      expect(a.headers['etag']).toBe(b.headers['etag']);
      expect(a.text).toBe(b.text);
    } finally {
      loops.forEach((loop) => loop.stop());
      await second.close();
    }
  });
});

describe('key-encryption-key rotation', () => {
  it('`keys reencrypt` seals every private key under the first KEK; the old KEK can then go', async () => {
    const newKek = randomBytes(32).toString('base64');
    const ringEnv = { ...env, KEY_ENCRYPTION_KEYS: `${newKek},${oldKek}` };
    let stdout = '';
    const code = await runCli(['keys', 'reencrypt', '--json'], { ...ringEnv, LOG_LEVEL: '' }, { readStdin: async () => '', stdout: (t) => (stdout += t), stderr: () => undefined }, clock);
    expect(code).toBe(0);
    const rows = await database.db.selectFrom('signing_keys').select(['kid', 'kek_id']).execute();
    expect(JSON.parse(stdout)).toEqual({ keys_reencrypted: rows.length });
    expect(new Set(rows.map((row) => row.kek_id))).toEqual(new Set([kekFingerprint(Buffer.from(newKek, 'base64'))]));

    const onlyNew = await startTestService(database, { env: { ...env, KEY_ENCRYPTION_KEYS: newKek }, clock });
    await onlyNew.close();
    await expect(startTestService(database, { env: { ...env, KEY_ENCRYPTION_KEYS: oldKek }, clock })).rejects.toThrow(/KEY_ENCRYPTION_KEYS/);
  });

  it('a KEK mismatch is refused at rotation, never promoted, and makes a replica unready, not silently stale', async () => {
    const own = await createTestDatabase();
    const kek = randomBytes(32).toString('base64');
    const ownEnv = testEnv(own, { KEY_ENCRYPTION_KEYS: kek, JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '1s' });
    const replica = await startTestService(own, { env: ownEnv, clock });
    try {
      // The CLI run with keys the deployment does not have: refused, nothing written.
      let stderr = '';
      const stranger = randomBytes(32).toString('base64');
      const code = await runCli(['keys', 'rotate'], { ...ownEnv, KEY_ENCRYPTION_KEYS: stranger, LOG_LEVEL: '' }, { readStdin: async () => '', stdout: () => undefined, stderr: (t) => (stderr += t) }, clock);
      expect(code).toBe(1);
      expect(stderr).toBe("error: these KEY_ENCRYPTION_KEYS cannot open the active signing key: run this with the service's keys\n");
      expect(await own.db.selectFrom('signing_keys').select('kid').where('state', '=', 'next').execute()).toEqual([]);

      // A next key sealed under a stranger's ring anyway (written by hand, without an activation
      // time, as the previous release wrote them): never promoted...
      const sealed = await generateSigningKey(createKeyRing([Buffer.from(stranger, 'base64')]));
      await insertSigningKey(own.db, { ...sealed, state: 'next', created_at: new Date(clock.now()), activated_at: null, retired_at: null });
      const active = replica.deps.keys.current().signing.kid;
      await maintainSigningKeys({ ...replica.deps, ring: replica.deps.keyRing }); // decides its activation time
      await makeNextKeyDue(own.db);
      await maintainSigningKeys({ ...replica.deps, ring: replica.deps.keyRing });
      expect((await own.db.selectFrom('signing_keys').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()).kid).toBe(active);
      expect(replica.logs.entries().some((e) => e['msg'] === 'a next signing key cannot be opened with KEY_ENCRYPTION_KEYS: not promoting it')).toBe(true);
      // ...the replica's reload fails and it says it is not ready...
      await expect(replica.deps.keys.reload()).rejects.toThrow(/KEY_ENCRYPTION_KEYS/);
      const ready = await request(replica.app).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.keys).toBe('unavailable');
      // ...and a new replica refuses to start, naming the setting.
      await expect(startTestService(own, { env: ownEnv, clock })).rejects.toThrow(/KEY_ENCRYPTION_KEYS/);
    } finally {
      await replica.close();
      await own.drop();
    }
  });
});

describe('the promotion delay', () => {
  it('is never shorter than a verifier refetch cooldown (30 s), however small JWKS_MAX_AGE is', () => {
    expect(promotionDelaySeconds({ jwksMaxAge: 0, keyReloadInterval: 1, accessTokenTtl: 900 })).toBe(37);
    expect(promotionDelaySeconds({ jwksMaxAge: 300, keyReloadInterval: 30, accessTokenTtl: 900 })).toBe(365);
  });

  it('covers the largest JWKS_MAX_AGE and KEY_RELOAD_INTERVAL of several replicas', () => {
    const a = { jwksMaxAge: 600, keyReloadInterval: 5, accessTokenTtl: 900 };
    const b = { jwksMaxAge: 60, keyReloadInterval: 30, accessTokenTtl: 3600 };
    expect(promotionDelaySeconds(a, b)).toBe(600 + 2 * 30 + 5);
    expect(retentionSeconds(a, b)).toBe(30 + 3600 + 5);
  });
});

describe('embedded key-encryption key', () => {
  it('a lost DATA_DIR/key-encryption-key next to sealed signing keys is reported as lost, not silently replaced', async () => {
    const { mkdtemp, rm, stat } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadKeyRing } = await import('../src/service.js');
    const dataDir = await mkdtemp(join(tmpdir(), 'tessera-kek-'));
    try {
      const embedded = { ...service.config, keyEncryptionKeys: undefined, dataDir };
      await expect(loadKeyRing(embedded, database.db)).rejects.toThrow(
        `${join(dataDir, 'key-encryption-key')} was missing, but the database holds signing keys sealed with it: restore the file from a backup`,
      );
      // On an empty database the same call is a first start: the key is made, mode 0600.
      const empty = await createTestDatabase();
      try {
        await rm(join(dataDir, 'key-encryption-key'), { force: true });
        await loadKeyRing(embedded, empty.db);
        expect((await stat(join(dataDir, 'key-encryption-key'))).mode & 0o777).toBe(0o600);
      } finally {
        await empty.drop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
