import { randomBytes } from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import { createPasswordHasher, type PasswordHasher } from '../../src/auth/passwords.js';
import { createAccount } from '../../src/auth/accounts.js';
import { generateClientSecret, hashClientSecret } from '../../src/auth/client-secrets.js';
import { type Config, type Env, loadConfig } from '../../src/config.js';
import { openPostgres } from '../../src/db/connect.js';
import { insertClient } from '../../src/db/clients.js';
import type { Client, ClientType, GrantType, User } from '../../src/db/schema.js';
import { addRoleScopes, addUserRole, insertRole } from '../../src/db/roles.js';
import type { Deps } from '../../src/deps.js';
import { createApp } from '../../src/http/app.js';
import { createLogger } from '../../src/logger.js';
import { prepareDeps } from '../../src/service.js';
import { type FakeClock, createFakeClock } from './clock.js';
import { type CapturedLogs, captureLogs } from './logs.js';
import { type Serving, serveOnFreePort, stopAll } from './process.js';
import { recordResponses } from './openapi.js';
import { noteSecret, watchSigningKeys } from './secrets.js';
import { afterAll, beforeAll, onTestFinished } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';
import { eachPrimary } from './redis-server.js';

export const TEST_ISSUER = 'http://tessera.test';

/**
 * Cheap Argon2 for the bulk of the suite (the production floor is enforced by loadConfig and tested
 * there). Everything else is the real code path.
 */
export const TEST_ARGON2 = { memoryKib: 256, iterations: 1, parallelism: 1 } as const;

export interface TestService {
  readonly app: Express;
  readonly deps: Deps;
  readonly config: Config;
  readonly clock: FakeClock;
  readonly logs: CapturedLogs;
  close(): Promise<void>;
}

export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/**
 * The environment of a test service: its own database, its own Redis key prefix, and login limits
 * high enough that only the rate-limit tests ever meet them.
 */
export function testEnv(database: TestDatabase, extra: Env = {}): Env {
  return {
    DATABASE_URL: database.url,
    KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64'),
    ISSUER: TEST_ISSUER,
    LOG_LEVEL: 'info',
    REDIS_URL: TEST_REDIS_URL,
    RATE_LIMIT_PREFIX: `tessera-test:${database.name}:`,
    LOGIN_IP_LIMIT: '1000000',
    LOGIN_IP_ACCOUNT_FAILURE_LIMIT: '1000000',
    CLIENT_AUTH_FAILURE_LIMIT: '1000000',
    CLIENT_RATE_LIMIT: '1000000',
    ...extra,
  };
}

/** One app instance on the test's database, wired exactly as `tessera serve` wires it. */
export async function startTestService(
  database: TestDatabase,
  options: { env?: Env; clock?: FakeClock; argon2?: Config['argon2']; passwords?: PasswordHasher } = {},
): Promise<TestService> {
  const config: Config = Object.freeze({ ...loadConfig(options.env ?? testEnv(database)), argon2: options.argon2 ?? TEST_ARGON2 });
  const logs = captureLogs();
  const log = createLogger(config.logLevel, logs);
  const clock = options.clock ?? createFakeClock();
  const handle = openPostgres(config.databaseUrl ?? database.url, log, { poolSize: 4 });
  const prepared = await prepareDeps(config, handle, log, clock).catch(async (error: unknown) => {
    await handle.close();
    throw error;
  });
  const deps: Deps = options.passwords ? { ...prepared, passwords: options.passwords } : prepared;
  // Its private keys, for the log check after the file (test/logs.setup.ts).
  const signingKeys = watchSigningKeys(deps);
  return {
    // Every response is checked against openapi.yaml after the test (test/openapi.setup.ts).
    app: recordResponses(createApp(deps)),
    deps,
    config,
    clock,
    logs,
    async close() {
      await signingKeys.close();
      await deleteRedisKeys(config);
      await deps.limits.close();
      await deps.audit.close(); // batched audit rows, before the database closes (as listen's close does)
      await handle.close();
    },
  };
}

/** Leaves nothing behind in the shared Redis (or the Sentinel set or cluster the test started). */
async function deleteRedisKeys(config: Config): Promise<void> {
  if (config.redis === undefined) return;
  await eachPrimary(config.redis, async (redis) => {
    for await (const keys of redis.scanStream({ match: `${config.rateLimits.prefix}*`, count: 500 })) {
      // One key per command: on a cluster node, keys of different slots cannot share a DEL.
      if ((keys as string[]).length > 0) await (keys as string[]).reduce((pipeline, key) => pipeline.unlink(key), redis.pipeline()).exec();
    }
  }).catch(() => undefined); // Redis stopped on purpose by a test: its keys went with it.
}

/** tessera_rate_limit_rejections_total for `layer`, from the service's /metrics: every refusal, unlike the audit event. */
export async function rateLimitRejections(service: TestService, layer: string): Promise<number> {
  const text = (await request(service.app).get('/metrics')).text;
  return Number(new RegExp(`^tessera_rate_limit_rejections_total\\{layer="${layer}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

let counter = 0;
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${counter}${randomBytes(3).toString('hex')}`;
}

export async function createTestUser(
  service: TestService,
  options: { username?: string; password?: string; scopes?: string[]; roles?: Record<string, string[]> } = {},
): Promise<User & { password: string }> {
  const password = options.password ?? `pw-${randomBytes(9).toString('base64url')}`;
  noteSecret('password (createTestUser)', password);
  const user = await createAccount(
    service.deps.db,
    service.deps.passwords,
    { username: options.username ?? uniqueName('user'), password, scopes: options.scopes ?? [] },
    new Date(service.clock.now()),
  );
  for (const [role, scopes] of Object.entries(options.roles ?? {})) {
    await insertRole(service.deps.db, role, '');
    await addRoleScopes(service.deps.db, role, scopes);
    await addUserRole(service.deps.db, user.id, role);
  }
  return { ...user, password };
}

export interface TestClient extends Client {
  /** Undefined for public clients. */
  readonly secret: string | undefined;
  /** `Basic ...` for confidential clients. */
  readonly basic: string;
}

export async function createTestClient(
  service: TestService,
  options: {
    type?: ClientType;
    grantTypes?: GrantType[];
    scopes?: string[];
    defaultScopes?: string[];
    audience?: string[];
    /** A chosen id or secret (the secret of a confidential client), where a test needs a particular shape. */
    id?: string;
    secret?: string;
    redirectUris?: string[];
    postLogoutRedirectUris?: string[];
    name?: string;
  } = {},
): Promise<TestClient> {
  const type = options.type ?? 'confidential';
  const secret = type === 'confidential' ? (options.secret ?? generateClientSecret()) : undefined;
  noteSecret('client secret (createTestClient)', secret);
  const client = await insertClient(service.deps.db, {
    id: options.id ?? uniqueName('client'),
    type,
    secret_hash: secret === undefined ? null : hashClientSecret(secret),
    grant_types: options.grantTypes ?? ['password', 'refresh_token'],
    allowed_scopes: options.scopes ?? ['profile', 'orders:read', 'orders:write'],
    default_scopes: options.defaultScopes ?? options.scopes ?? ['profile'],
    audience: options.audience ?? [],
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.redirectUris === undefined ? {} : { redirect_uris: options.redirectUris }),
    ...(options.postLogoutRedirectUris === undefined ? {} : { post_logout_redirect_uris: options.postLogoutRedirectUris }),
    created_at: new Date(service.clock.now()),
    updated_at: new Date(service.clock.now()),
  });
  return { ...client, secret, basic: basicAuth(client.id, secret ?? '') };
}

/**
 * For a `tessera serve` a test starts on `database` (test/helpers/process.ts, serveOnFreePort): its
 * environment on loopback, and a user and a client made in-process on that database first.
 */
async function seedServedDatabase(database: TestDatabase): Promise<{ settings: NodeJS.ProcessEnv; client: TestClient; user: User & { password: string } }> {
  const settings = { PATH: process.env['PATH'], ...testEnv(database, { HOST: '127.0.0.1', KEY_ENCRYPTION_KEYS: randomBytes(32).toString('base64') }) };
  const seeding = await startTestService(database, { env: settings });
  try {
    return { settings, client: await createTestClient(seeding), user: await createTestUser(seeding) };
  } finally {
    await seeding.close();
  }
}

/**
 * The file-level set-up for files that run the real binary: a fresh database seeded with a client
 * and a user before the file's tests, and every `tessera serve` they started stopped after them.
 * `serve(env)` starts one with `env` over the seeded settings. Read `client` and `user` inside tests.
 */
export function useServedDatabase(): {
  serve(env?: NodeJS.ProcessEnv): Promise<Serving>;
  readonly client: TestClient;
  readonly user: User & { password: string };
} {
  let database: TestDatabase | undefined;
  let seeded: Awaited<ReturnType<typeof seedServedDatabase>> | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    seeded = await seedServedDatabase(database);
  });
  afterAll(async () => {
    await stopAll();
    await database?.drop();
  });
  const current = () => seeded ?? fail('the served database has not been seeded');
  return {
    serve: (env = {}) => serveOnFreePort({ ...current().settings, ...env }),
    get client() {
      return current().client;
    },
    get user() {
      return current().user;
    },
  };
}

/** RFC 6749 §2.3.1 client_secret_basic: `Basic base64(urlencode(id) ":" urlencode(secret))`. */
export function basicAuth(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** POST /token with grant_type=password, as a gateway sends it (client_secret_basic); the caller asserts. */
export function passwordGrant(
  app: Express,
  client: { readonly basic: string },
  user: { readonly username: string; readonly password: string },
  extra: Record<string, string> = {},
): request.Test {
  return request(app)
    .post('/token')
    .type('form')
    .set('Authorization', client.basic)
    .send({ grant_type: 'password', username: user.username, password: user.password, ...extra });
}

/** The password grant over the network, to a `tessera serve` the test started at `base`. */
export function fetchPasswordGrant(
  base: string,
  client: { readonly basic: string },
  user: { readonly username: string; readonly password: string },
): Promise<Response> {
  return fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: client.basic },
    body: new URLSearchParams({ grant_type: 'password', username: user.username, password: user.password }),
  });
}

export { createPasswordHasher, recordResponses };

/** Tessera's own Argon2 hasher, counting the verifies that ran: a guess that never reached one was stopped. */
export function countingHasher(): PasswordHasher & { readonly verifies: number } {
  const real = createPasswordHasher(TEST_ARGON2, { maxConcurrent: 3, queueLimit: 10_000 });
  let verifies = 0;
  return {
    ...real,
    get verifies() {
      return verifies;
    },
    verify: (hash, password) => {
      verifies += 1;
      return real.verify(hash, password);
    },
  };
}

/**
 * The usual file-level set-up: a fresh database and a service on it, started before the file's
 * tests and torn down after them. Read `current()` inside tests and hooks, not at import time.
 */
export function useTestService(options: Parameters<typeof startTestService>[1] = {}): {
  current(): TestService;
  database(): TestDatabase;
} {
  let database: TestDatabase | undefined;
  let service: TestService | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    service = await startTestService(database, options);
  });
  afterAll(async () => {
    await service?.close();
    await database?.drop();
  });
  return {
    current: () => service ?? fail('the test service has not started'),
    database: () => database ?? fail('the test database has not been created'),
  };
}

function fail(message: string): never {
  throw new Error(message);
}

/** A service on a database of its own, with a gateway client and an administrator holding an `admin`-scoped token. */
export interface AdminService {
  readonly database: TestDatabase;
  readonly service: TestService;
  readonly env: Env;
  /** A confidential client allowed `admin` and `scopes`, for the admin's token and the tests' logins. */
  readonly gateway: TestClient;
  readonly admin: User & { password: string };
  readonly adminToken: string;
  /** Stops the service and drops the database. */
  close(): Promise<void>;
}

/** The set-up of the files that drive the admin API: call it in `beforeAll`, and `close()` in `afterAll`. */
export async function startAdminService(
  options: { env?: Env; scopes?: readonly string[]; defaultScopes?: readonly string[] } = {},
): Promise<AdminService> {
  const database = await createTestDatabase();
  const env = testEnv(database, options.env);
  const service = await startTestService(database, { env });
  const scopes = ['admin', ...(options.scopes ?? [])];
  const gateway = await createTestClient(service, { scopes, ...(options.defaultScopes === undefined ? {} : { defaultScopes: [...options.defaultScopes] }) });
  // A role of its own: a test of the file may create, rename or delete `administrators`.
  const admin = await createTestUser(service, { roles: { [uniqueName('administrators')]: ['admin'] } });
  const res = await passwordGrant(service.app, gateway, admin, { scope: 'admin' });
  if (res.status !== 200) throw new Error(`the administrator's token was refused: ${res.status} ${JSON.stringify(res.body)}`);
  return {
    database,
    service,
    env,
    gateway,
    admin,
    adminToken: res.body.access_token as string,
    close: async () => {
      await service.close();
      await database.drop();
    },
  };
}

/**
 * For files whose tests each start services of their own, with the limits they need, on one
 * database the file creates: every service gets a Redis prefix of its own, so its counters start
 * at zero, and they all share the database's key-encryption key.
 */
export function useServicesPerTest(tag: string): {
  database(): TestDatabase;
  readonly kek: string;
  /** A Redis prefix no other service of the file has used (two replicas share one). */
  freshPrefix(): string;
  /** A service with these settings; the caller closes it. `database`: the file's, unless another route to it. */
  start(env: Env, options?: { prefix?: string; passwords?: PasswordHasher; database?: TestDatabase }): Promise<TestService>;
  /** The same, closed (and its Redis keys deleted) when the running test ends. */
  forTest(env: Env, options?: { prefix?: string; passwords?: PasswordHasher; database?: TestDatabase }): Promise<TestService>;
} {
  let database: TestDatabase | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database?.drop());
  const kek = randomBytes(32).toString('base64');
  let prefixes = 0;
  const current = () => database ?? fail('the test database has not been created');
  const freshPrefix = () => `tessera-test:${current().name}:${tag}${++prefixes}:`;
  const start: ReturnType<typeof useServicesPerTest>['start'] = (env, { passwords, prefix = freshPrefix(), database: route = current() } = {}) =>
    startTestService(route, {
      env: testEnv(route, { KEY_ENCRYPTION_KEYS: kek, RATE_LIMIT_PREFIX: prefix, ...env }),
      ...(passwords === undefined ? {} : { passwords }),
    });
  return {
    database: current,
    kek,
    freshPrefix,
    start,
    async forTest(env, options) {
      const service = await start(env, options);
      onTestFinished(() => service.close());
      return service;
    },
  };
}
