import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClientLookup } from '../src/auth/client-cache.js';
import { hashClientSecret } from '../src/auth/client-secrets.js';
import { openEmbedded } from '../src/db/connect.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createLogger } from '../src/logger.js';
import { useProxiedService } from './helpers/database-proxy.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { captureLogs } from './helpers/logs.js';
import { waitFor } from './helpers/wait.js';
import { basicAuth as basic, createTestClient, startTestService, type TestClient, type TestService, testEnv } from './helpers/service.js';

// Client authentication keeps the clients it looked up (src/auth/client-cache.ts). These tests
// show that what it keeps never outlives a change: not one made by another replica or by plain
// SQL, not while the notification connection is lost, and not while it silently stops delivering.

const LIVE = 'database notifications are live';
const LOST = 'database notifications lost: cached values are not used until they are back';

const logged = (service: TestService, message: string) => service.logs.entries().filter((entry) => entry['msg'] === message).length;
const untilLogged = (service: TestService, message: string, times = 1) =>
  waitFor(message, () => logged(service, message) >= times);

const clientCredentials = (service: TestService, id: string, secret: string) =>
  request(service.app).post('/token').type('form').set('Authorization', basic(id, secret)).send({ grant_type: 'client_credentials' });

/** A new secret set by plain SQL on the test's own connection: no Tessera process is told but by PostgreSQL. */
async function setSecretBySql(database: TestDatabase, id: string, secret: string): Promise<void> {
  await database.db.updateTable('clients').set({ secret_hash: hashClientSecret(secret) }).where('id', '=', id).execute();
}

describe('kept clients', () => {
  let database: TestDatabase;
  let replica: TestService;
  let other: TestService;
  let client: TestClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    // Two replicas: the same database and key-encryption key.
    const env = testEnv(database);
    replica = await startTestService(database, { env });
    other = await startTestService(database, { env });
    await Promise.all([untilLogged(replica, LIVE), untilLogged(other, LIVE)]);
  });
  afterAll(async () => {
    await other?.close();
    await replica?.close();
    await database?.drop();
  });
  afterEach(async () => {
    // A lock a failed test left would hold up the next.
    await sql`select 1`.execute(database.db);
  });

  it('authenticates a client it has seen without reading the clients table again', async () => {
    client = await createTestClient(replica, { grantTypes: ['client_credentials'] });
    expect((await clientCredentials(replica, client.id, client.secret!)).status).toBe(200);
    // With the table locked against reads, only a kept client can still be authenticated.
    await database.db.transaction().execute(async (trx) => {
      await sql`lock table clients in access exclusive mode`.execute(trx);
      expect((await clientCredentials(replica, client.id, client.secret!)).status).toBe(200);
    });
  });

  // Kept clients have no expiry and the channel re-probes only every 5 s: within 2 s, only the
  // notification of the change can have made the replica forget it.
  it('forgets a client when another replica or plain SQL changes it, as soon as the database announces it', async () => {
    client = await createTestClient(replica, { grantTypes: ['client_credentials'] });
    expect((await clientCredentials(replica, client.id, client.secret!)).status).toBe(200);

    const rotated = `rotated-${client.secret}`;
    await setSecretBySql(database, client.id, rotated);
    await waitFor('the old secret to be refused', async () => ((await clientCredentials(replica, client.id, client.secret!)).status === 401), { timeoutMs: 2_000 });
    expect((await clientCredentials(replica, client.id, rotated)).status).toBe(200);

    // A change of grant types made through the other replica's admin rules.
    await other.deps.db.updateTable('clients').set({ grant_types: ['password'] }).where('id', '=', client.id).execute();
    await waitFor('the grant to be refused', async () => {
      const res = await clientCredentials(replica, client.id, rotated);
      return res.status === 400 && res.body.error === 'unauthorized_client';
    }, { timeoutMs: 2_000 });

    await database.db.deleteFrom('clients').where('id', '=', client.id).execute();
    await waitFor('the deleted client to be refused', async () => ((await clientCredentials(replica, client.id, rotated)).status === 401), { timeoutMs: 2_000 });
  });

  it('keeps nothing while its notification connection is lost, and starts again once it is back', async () => {
    client = await createTestClient(replica, { grantTypes: ['client_credentials'] });
    expect((await clientCredentials(replica, client.id, client.secret!)).status).toBe(200);
    const lostBefore = logged(replica, LOST);
    const liveBefore = logged(replica, LIVE);

    // Both replicas' notification connections end (this database's only `tessera-listen` sessions).
    await sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${database.name} and application_name = 'tessera-listen'`.execute(database.db);
    await untilLogged(replica, LOST, lostBefore + 1);
    // Changed while nobody listens: no notification will ever tell the replica. It must read again.
    const rotated = `lost-${client.secret}`;
    await setSecretBySql(database, client.id, rotated);
    expect((await clientCredentials(replica, client.id, client.secret!)).status).toBe(401);
    expect((await clientCredentials(replica, client.id, rotated)).status).toBe(200);

    await untilLogged(replica, LIVE, liveBefore + 1);
    const again = `back-${client.secret}`;
    await setSecretBySql(database, client.id, again);
    await waitFor('the rotated secret to be refused', async () => ((await clientCredentials(replica, client.id, rotated)).status === 401), { timeoutMs: 2_000 });
    expect((await clientCredentials(replica, client.id, again)).status).toBe(200);
  });
});

describe('kept clients, when the notification connection silently stops delivering', () => {
  const proxied = useProxiedService();
  let service: TestService;
  beforeAll(async () => {
    service = proxied.service();
    await untilLogged(service, LIVE);
  });

  it('notices within seconds that its own probe does not come back, and stops trusting what it kept', async () => {
    const client = await createTestClient(service, { grantTypes: ['client_credentials'] });
    expect((await clientCredentials(service, client.id, client.secret!)).status).toBe(200);

    // A partition: the connections stay open and carry nothing (no error, no end), so the
    // notification of this change is never delivered.
    const proxy = proxied.proxy();
    proxy.stall();
    const rotated = `stalled-${client.secret}`;
    await setSecretBySql(proxied.database(), client.id, rotated);
    // The kept client goes with the failed probe (every 5 s, 2 s to answer); after that a lookup
    // needs the database, which does not answer: 503, never the old secret accepted.
    const refused = await waitFor('the old secret to stop working', async () => {
      const res = await clientCredentials(service, client.id, client.secret!);
      return res.status !== 200 && res;
    }, { timeoutMs: 12_000 });
    expect(refused.status, JSON.stringify(refused.body)).toBe(503);
    expect(logged(service, LOST)).toBe(1);

    proxy.restore();
    await waitFor('the database to answer', async () => ((await clientCredentials(service, client.id, rotated)).status === 200));
    expect((await clientCredentials(service, client.id, client.secret!)).status).toBe(401);
  }, 30_000);
});

describe('kept clients on the embedded database', () => {
  it('sees a change at the next lookup: PGlite delivers the notification with the change', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'tessera-client-cache-'));
    const handle = await openEmbedded(dataDir, createLogger('info', captureLogs()));
    try {
      await migrateToLatest(handle.db);
      const now = new Date();
      const row = { type: 'confidential' as const, grant_types: ['client_credentials' as const], created_at: now, updated_at: now };
      await handle.db.insertInto('clients').values({ ...row, id: 'svc', secret_hash: hashClientSecret('one') }).execute();
      const clients = createClientLookup(handle.db, handle.listen);
      // Kept once listening: a second lookup answers the very object the first one read.
      await waitFor('the lookup to keep the client', async () => ((await clients.find('svc')) === (await clients.find('svc'))));
      expect((await clients.find('svc'))?.secret_hash).toBe(hashClientSecret('one'));
      await handle.db.updateTable('clients').set({ secret_hash: hashClientSecret('two') }).where('id', '=', 'svc').execute();
      expect((await clients.find('svc'))?.secret_hash).toBe(hashClientSecret('two'));
      await handle.db.deleteFrom('clients').where('id', '=', 'svc').execute();
      expect(await clients.find('svc')).toBeUndefined();
    } finally {
      await handle.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
