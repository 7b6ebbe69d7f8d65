import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import type { Env } from '../../src/config.js';
import { maintainSigningKeys, promotionDelaySeconds, retentionSeconds } from '../../src/keys/lifecycle.js';
import { createFakeClock } from '../helpers/clock.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { ageSigningKeys, databaseNow, kidOfNewToken, makeNextKeyDue } from '../helpers/keys.js';
import { startTestService, testEnv, type TestService } from '../helpers/service.js';
import { loginAdmin } from './flow.js';

// ATTACKS.md section I: defences that an attacker, or an accident, turns against the service
// itself. I5: a decision about the shared signing keys made on one host's clock and settings,
// which the other hosts do not share.

const SECOND = 1000;
const DAY = 86_400 * SECOND;

describe('I5 signing keys on one clock, the database\'s', () => {
  let database: TestDatabase;
  /** Two replicas on clocks 400 days apart, serving with different settings. */
  let a: TestService;
  let b: TestService;
  let cliEnv: Env;
  /** The CLI's host: 5 minutes ahead of replica a, with its own (default) JWKS_MAX_AGE. */
  const cliClock = createFakeClock();

  beforeAll(async () => {
    database = await createTestDatabase();
    const kek = randomBytes(32).toString('base64');
    const env = (extra: Env) => testEnv(database, { KEY_ENCRYPTION_KEYS: kek, ...extra });
    const clockA = createFakeClock();
    a = await startTestService(database, { env: env({ JWKS_MAX_AGE: '60s', KEY_RELOAD_INTERVAL: '1s' }), clock: clockA });
    b = await startTestService(database, {
      env: env({ JWKS_MAX_AGE: '2m', KEY_RELOAD_INTERVAL: '2s', ACCESS_TOKEN_TTL: '30m' }),
      clock: createFakeClock(clockA.now() + 400 * DAY),
    });
    cliClock.set(clockA.now() + 5 * 60 * SECOND);
    cliEnv = { ...env({}), LOG_LEVEL: '' };
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  async function cli(...argv: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(argv, cliEnv, { readStdin: async () => '', stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) }, cliClock);
    expect(stderr).toBe('');
    return { code, json: JSON.parse(stdout) as unknown };
  }

  /** One tick of a replica's maintenance loop: the lifecycle, then a reload. */
  const maintain = async (replica: TestService) => {
    await maintainSigningKeys({ ...replica.deps, ring: replica.deps.keyRing });
    await replica.deps.keys.reload();
  };

  const keyRow = (state: 'next' | 'active' | 'retired') =>
    database.db.selectFrom('signing_keys').selectAll().where('state', '=', state).executeTakeFirstOrThrow();

  async function listedBy(replica: TestService) {
    const admin = await loginAdmin(replica);
    const res = await request(replica.app).get('/admin/keys').set('Authorization', admin.authorization);
    expect(res.status).toBe(200);
    return res.body.items as { kid: string; state: string; retired_at: string | null; next_change_at: string | null }[];
  }

  let first: string;
  let added: string;

  it('I5 a key added by the CLI on a clock 5 minutes off, with its own JWKS_MAX_AGE, reports the activation time the fleet uses', async () => {
    first = a.deps.keys.current().signing.kid;
    const before = await databaseNow(database.db);
    const { code, json } = await cli('keys', 'rotate', '--json');
    expect(code).toBe(0);
    const after = await databaseNow(database.db);
    const row = await keyRow('next');
    added = row.kid;
    // What it printed is what it stored: decided once, when the key was added.
    expect(json).toEqual({ kid: row.kid, state: 'next', activates_at: row.activates_at!.toISOString() });
    // Dated by the database, not by the CLI's clock 5 minutes off (nor 1,000 days off).
    expect(row.created_at.getTime()).toBeGreaterThanOrEqual(before);
    expect(row.created_at.getTime()).toBeLessThanOrEqual(after);
    // The delay covers the largest max-age and reload interval the replicas announced (b's 2m and
    // 2s), not the CLI's own JWKS_MAX_AGE (5m by default), which no verifier ever received.
    const delay = promotionDelaySeconds(a.config, b.config);
    expect(delay).toBe(120 + 2 * 2 + 5);
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(delay * SECOND);

    // Every replica and the CLI report that same stored time.
    for (const replica of [a, b]) {
      expect((await listedBy(replica)).find((key) => key.kid === added)).toMatchObject({ state: 'next', next_change_at: row.activates_at!.toISOString() });
    }
    const listed = (await cli('keys', 'list', '--json')).json as { kid: string; next_change_at: string }[];
    expect(listed.find((key) => key.kid === added)?.next_change_at).toBe(row.activates_at!.toISOString());
  });

  it('I5 two replicas on clocks far apart promote it at the stored time, and not before', async () => {
    expect(added).toBeDefined();
    // A day later on both replicas' clocks, 30 s before the stored time on the database's: nothing.
    a.clock.advance(DAY);
    b.clock.advance(DAY);
    await ageSigningKeys(database.db, promotionDelaySeconds(a.config, b.config) - 30);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('next')).kid).toBe(added);
    expect(await kidOfNewToken(a)).toBe(first);
    expect(await kidOfNewToken(b)).toBe(first);

    // Past it: exactly one of them promotes, and both sign with the new key.
    await ageSigningKeys(database.db, 31);
    await Promise.all([maintain(a), maintain(b)]);
    await Promise.all([a.deps.keys.reload(), b.deps.keys.reload()]);
    const activations = [...a.logs.entries('signing_key_activated'), ...b.logs.entries('signing_key_activated')];
    expect(activations).toEqual([expect.objectContaining({ kid: added })]);
    const active = await keyRow('active');
    expect(active.kid).toBe(added);
    expect(active.activated_at!.getTime()).toBeGreaterThanOrEqual(active.activates_at!.getTime());
    expect(await kidOfNewToken(a)).toBe(added);
    expect(await kidOfNewToken(b)).toBe(added);
  });

  it('I5 a retired key leaves the JWKS on the database\'s clock, after the longest ACCESS_TOKEN_TTL announced', async () => {
    const retired = await keyRow('retired');
    expect(retired.kid).toBe(first);
    // b issues tokens for 30 minutes: a, whose own tokens live 15, reports b's retention too.
    const retention = retentionSeconds(a.config, b.config);
    expect(retention).toBe(2 + 1800 + 5);
    const listed = (await listedBy(a)).find((key) => key.kid === first)!;
    expect(Date.parse(listed.next_change_at!) - Date.parse(listed.retired_at!)).toBe(retention * SECOND);

    // The replicas' clocks a week on change nothing; the database's time passing does.
    a.clock.advance(7 * DAY);
    b.clock.advance(7 * DAY);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('retired')).kid).toBe(first);
    await ageSigningKeys(database.db, retention - 10);
    await Promise.all([maintain(a), maintain(b)]);
    expect((await keyRow('retired')).kid).toBe(first);
    await ageSigningKeys(database.db, 11);
    await Promise.all([maintain(a), maintain(b)]);
    expect(await database.db.selectFrom('signing_keys').select('kid').where('state', '=', 'retired').execute()).toEqual([]);
    const jwks = await request(b.app).get('/.well-known/jwks.json');
    expect(jwks.body.keys.map((key: { kid: string }) => key.kid)).toEqual([added]);
  });

  it('I5 the stored delay covers the largest max-age a replica announced, while a verifier may still hold its JWKS', async () => {
    // A replica that served a 10-minute JWKS has just stopped: verifiers may hold its document.
    const gone = await startTestService(database, {
      env: testEnv(database, { KEY_ENCRYPTION_KEYS: cliEnv['KEY_ENCRYPTION_KEYS']!, JWKS_MAX_AGE: '10m', KEY_RELOAD_INTERVAL: '2s' }),
      clock: createFakeClock(),
    });
    await gone.close();
    expect((await cli('keys', 'rotate', '--json')).code).toBe(0);
    let row = await keyRow('next');
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(promotionDelaySeconds(a.config, b.config, gone.config) * SECOND);
    expect(promotionDelaySeconds(a.config, b.config, gone.config)).toBe(600 + 2 * 2 + 5);
    await makeNextKeyDue(database.db);
    await maintain(a);

    // Once no verifier can hold what it served (its last announcement is older than 2 reload
    // intervals plus its max-age or token lifetime), it no longer counts.
    await sql`update replica_settings set announced_at = announced_at - interval '1 hour' where jwks_max_age = 600`.execute(database.db);
    expect((await cli('keys', 'rotate', '--json')).code).toBe(0);
    row = await keyRow('next');
    expect(row.activates_at!.getTime() - row.created_at.getTime()).toBe(promotionDelaySeconds(a.config, b.config) * SECOND);
  });
});
