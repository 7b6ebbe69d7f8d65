import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Config, ConfigError, type Env, loadConfig } from '../src/config.js';
import { freePort, runTessera, stopAll } from './helpers/process.js';

const KEK = randomBytes(32).toString('base64');
const DATABASE_URL = 'postgres://tessera@127.0.0.1:5432/tessera';

/** loadConfig's ConfigError, or a failure when the environment was accepted. */
function configError(env: Env): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected loadConfig to refuse the environment');
}

function expectProblems(env: Env, problems: string[]): void {
  expect(configError(env).problems).toEqual(problems);
}

describe('loadConfig: defaults', () => {
  it('gives the documented defaults for an empty environment', () => {
    // DESIGN.md lets names be added; the documented ones keep their meaning and defaults.
    const expected = {
      port: 3000,
      host: '0.0.0.0',
      issuer: 'http://localhost:3000',
      audience: 'http://localhost:3000',
      databaseUrl: undefined,
      dataDir: './.tessera',
      redis: undefined,
      keyEncryptionKeys: undefined,
      accessTokenTtl: 900,
      refreshTokenIdleTtl: 1_209_600,
      refreshTokenAbsoluteTtl: 7_776_000,
      refreshReuseGrace: 10,
      jwksMaxAge: 300,
      trustProxy: false,
      argon2: { memoryKib: 19_456, iterations: 2, parallelism: 1 },
      bootstrapAdmin: undefined,
      corsOrigins: [],
      registration: 'closed',
      logLevel: 'info',
      shutdownDelay: 5,
      shutdownTimeout: 10,
      databaseConnectTimeout: 30,
      webConcurrency: 1,
    } satisfies Partial<Config>;
    const config = loadConfig({});
    expect(config).toMatchObject(expected);
    for (const unset of ['databaseUrl', 'redis', 'keyEncryptionKeys', 'bootstrapAdmin'] as const) {
      expect(config[unset]).toBeUndefined();
    }
  });

  it('treats blank variables as unset', () => {
    expect(loadConfig({ PORT: '', ISSUER: '  ', LOG_LEVEL: '', TRUST_PROXY: ' ' })).toEqual(loadConfig({}));
  });

  it('derives ISSUER from PORT, and AUDIENCE from ISSUER', () => {
    const onPort = loadConfig({ PORT: '8080' });
    expect(onPort.port).toBe(8080);
    expect(onPort.issuer).toBe('http://localhost:8080');
    expect(onPort.audience).toBe('http://localhost:8080');

    const behindProxy = loadConfig({ ISSUER: 'https://auth.example.com' });
    expect(behindProxy.issuer).toBe('https://auth.example.com');
    expect(behindProxy.audience).toBe('https://auth.example.com');

    const withAudience = loadConfig({ ISSUER: 'https://auth.example.com', AUDIENCE: 'https://api.example.com' });
    expect(withAudience.issuer).toBe('https://auth.example.com');
    expect(withAudience.audience).toBe('https://api.example.com');
  });

  it('returns a frozen object', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(config.port).toBe(3000);
  });
});

describe('loadConfig: values', () => {
  it('reads durations in s, m, h and d', () => {
    const config = loadConfig({
      ACCESS_TOKEN_TTL: '2h',
      REFRESH_TOKEN_IDLE_TTL: '14d',
      REFRESH_TOKEN_ABSOLUTE_TTL: '30d',
      REFRESH_REUSE_GRACE: '10s',
      JWKS_MAX_AGE: '15m',
    });
    expect(config.accessTokenTtl).toBe(7_200);
    expect(config.refreshTokenIdleTtl).toBe(1_209_600);
    expect(config.refreshTokenAbsoluteTtl).toBe(2_592_000);
    expect(config.refreshReuseGrace).toBe(10);
    expect(config.jwksMaxAge).toBe(900);
    expect(loadConfig({ ACCESS_TOKEN_TTL: '15m' }).accessTokenTtl).toBe(900);
    expect(loadConfig({ REFRESH_REUSE_GRACE: '0' }).refreshReuseGrace).toBe(0);
    expect(loadConfig({ SHUTDOWN_DELAY: '2s', SHUTDOWN_TIMEOUT: '1m' })).toMatchObject({ shutdownDelay: 2, shutdownTimeout: 60 });
    expect(loadConfig({ SHUTDOWN_DELAY: '0' }).shutdownDelay).toBe(0);
    expect(loadConfig({ DATABASE_CONNECT_TIMEOUT: '2m' }).databaseConnectTimeout).toBe(120);
  });

  it('reads a ring of key-encryption keys in order', () => {
    const second = randomBytes(32);
    const config = loadConfig({ DATABASE_URL, KEY_ENCRYPTION_KEYS: `${KEK}, ${second.toString('base64')}` });
    expect(config.databaseUrl).toBe(DATABASE_URL);
    expect(config.keyEncryptionKeys).toEqual([Buffer.from(KEK, 'base64'), second]);
  });

  it('accepts TRUST_PROXY as a hop count', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: '10' }).trustProxy).toBe(10);
    expect(loadConfig({ TRUST_PROXY: 'false' }).trustProxy).toBe(false);
  });

  it('accepts TRUST_PROXY as a list of addresses, CIDRs and presets', () => {
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.1' }).trustProxy).toEqual(['10.0.0.0/8', '192.168.1.1']);
    expect(loadConfig({ TRUST_PROXY: 'loopback,fd00::/8,2001:db8::1' }).trustProxy).toEqual([
      'loopback',
      'fd00::/8',
      '2001:db8::1',
    ]);
  });

  it('accepts Argon2 settings at or above the OWASP floor', () => {
    expect(loadConfig({ ARGON2_MEMORY_KIB: '47104', ARGON2_ITERATIONS: '1' }).argon2).toEqual({
      memoryKib: 47_104,
      iterations: 1,
      parallelism: 1,
    });
    expect(loadConfig({ ARGON2_MEMORY_KIB: '7168', ARGON2_ITERATIONS: '5' }).argon2.memoryKib).toBe(7_168);
    expect(loadConfig({ ARGON2_MEMORY_KIB: '65536', ARGON2_ITERATIONS: '3', ARGON2_PARALLELISM: '4' }).argon2).toEqual({
      memoryKib: 65_536,
      iterations: 3,
      parallelism: 4,
    });
  });

  it('reads the bootstrap admin, keeping spaces in the password', () => {
    const config = loadConfig({ BOOTSTRAP_ADMIN_USERNAME: 'admin', BOOTSTRAP_ADMIN_PASSWORD: '  long enough secret  ' });
    expect(config.bootstrapAdmin).toEqual({ username: 'admin', password: '  long enough secret  ' });
  });

  it('reads REGISTRATION, LOG_LEVEL and CORS_ORIGINS', () => {
    const config = loadConfig({
      REGISTRATION: 'open',
      LOG_LEVEL: 'debug',
      CORS_ORIGINS: 'https://app.example.com, http://localhost:5173',
    });
    expect(config.registration).toBe('open');
    expect(config.logLevel).toBe('debug');
    expect(config.corsOrigins).toEqual(['https://app.example.com', 'http://localhost:5173']);
  });

  it('accepts an ISSUER with a path', () => {
    expect(loadConfig({ ISSUER: 'https://example.com/auth' }).issuer).toBe('https://example.com/auth');
  });
});

describe('loadConfig: refusals', () => {
  it('reports every bad value at once, in one ConfigError', () => {
    const error = configError({
      PORT: 'abc',
      ACCESS_TOKEN_TTL: 'soon',
      SHUTDOWN_DELAY: 'a while',
      DATABASE_CONNECT_TIMEOUT: '-1s',
      TRUST_PROXY: 'true',
      LOG_LEVEL: 'loud',
      ISSUER: 'https://auth.example.com/',
      DATABASE_URL,
      KEY_ENCRYPTION_KEYS: randomBytes(16).toString('base64'),
    });
    const problems = [
      'PORT must be a whole number from 0 to 65535 (got "abc")',
      'ACCESS_TOKEN_TTL must be a duration such as 15m, 14d or 10s, from 30s to 3650d (got "soon")',
      'SHUTDOWN_DELAY must be a duration such as 15m, 14d or 10s, from 0s to 3650d (got "a while")',
      'DATABASE_CONNECT_TIMEOUT must be a duration such as 15m, 14d or 10s, from 0s to 3650d (got "-1s")',
      'TRUST_PROXY=true is refused: it trusts any X-Forwarded-For; give a hop count or a CIDR list',
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      'ISSUER must not end with "/" (got "https://auth.example.com/")',
      'KEY_ENCRYPTION_KEYS entry 1 must be 32 bytes in base64 (openssl rand -base64 32), got 16 bytes',
    ];
    expect(error.name).toBe('ConfigError');
    expect([...error.problems].sort()).toEqual([...problems].sort());
    const lines = error.message.split('\n');
    expect(lines[0]).toBe('Invalid configuration:');
    expect(lines.slice(1).sort()).toEqual(problems.map((problem) => `  - ${problem}`).sort());
  });

  it('never echoes a secret in a problem', () => {
    const kek = randomBytes(16).toString('base64');
    const error = configError({
      DATABASE_URL: 'mysql://tessera:hunter2-db@db.internal/tessera',
      REDIS_URL: 'http://:hunter2-redis@redis.internal',
      KEY_ENCRYPTION_KEYS: kek,
      BOOTSTRAP_ADMIN_PASSWORD: 'hunter2-admin',
    });
    expect(error.problems).toEqual([
      'DATABASE_URL must be a postgres:// or postgresql:// connection string',
      'REDIS_URL must be a redis:// or rediss:// URL',
      'KEY_ENCRYPTION_KEYS entry 1 must be 32 bytes in base64 (openssl rand -base64 32), got 16 bytes',
      'BOOTSTRAP_ADMIN_USERNAME and BOOTSTRAP_ADMIN_PASSWORD must be set together',
    ]);
    for (const secret of ['hunter2-db', 'hunter2-redis', 'hunter2-admin', kek]) expect(error.message).not.toContain(secret);
  });

  it('refuses DATABASE_URL without KEY_ENCRYPTION_KEYS', () => {
    expectProblems({ DATABASE_URL }, [
      'KEY_ENCRYPTION_KEYS is required when DATABASE_URL is set (generate one with: openssl rand -base64 32)',
    ]);
    expect(loadConfig({ DATABASE_URL, KEY_ENCRYPTION_KEYS: KEK }).databaseUrl).toBe(DATABASE_URL);
  });

  it('refuses the embedded database when NODE_ENV=production, in one line that names DATABASE_URL', () => {
    const problem = 'DATABASE_URL is required when NODE_ENV=production: the embedded database is for development only';
    expectProblems({ NODE_ENV: 'production' }, [problem]);
    expect(configError({ NODE_ENV: 'production', WEB_CONCURRENCY: '2' }).problems).toEqual([problem]);
    expect(configError({ NODE_ENV: 'production' }).message).toBe(`Invalid configuration: ${problem}`);
    expect(loadConfig({ NODE_ENV: 'production', DATABASE_URL, KEY_ENCRYPTION_KEYS: KEK }).databaseUrl).toBe(DATABASE_URL);
    for (const development of [undefined, 'development', 'test', '']) {
      expect(loadConfig({ NODE_ENV: development }).databaseUrl).toBeUndefined();
    }
  });

  it('refuses WEB_CONCURRENCY above 1 on the embedded database, and a count out of range', () => {
    expectProblems({ WEB_CONCURRENCY: '2' }, ['WEB_CONCURRENCY above 1 needs DATABASE_URL: the embedded database belongs to one process']);
    expectProblems({ WEB_CONCURRENCY: '0' }, ['WEB_CONCURRENCY must be a whole number from 1 to 64 (got "0")']);
    expect(loadConfig({ DATABASE_URL, KEY_ENCRYPTION_KEYS: KEK, WEB_CONCURRENCY: '2' }).webConcurrency).toBe(2);
  });

  it('names the bad entry of a key ring', () => {
    expectProblems({ DATABASE_URL, KEY_ENCRYPTION_KEYS: `${KEK},${randomBytes(31).toString('base64')}` }, [
      'KEY_ENCRYPTION_KEYS entry 2 must be 32 bytes in base64 (openssl rand -base64 32), got 31 bytes',
    ]);
    expectProblems({ DATABASE_URL, KEY_ENCRYPTION_KEYS: `${KEK},` }, [
      'KEY_ENCRYPTION_KEYS entry 2 must be 32 bytes in base64 (openssl rand -base64 32), got 0 bytes',
    ]);
  });

  it.each(['65536', '-1', '3000.5', '0x50', '80 80'])('refuses PORT=%j', (port) => {
    expectProblems({ PORT: port }, [`PORT must be a whole number from 0 to 65535 (got "${port}")`]);
  });

  const NO_QUERY = 'ISSUER must be an http(s) URL without query or fragment';
  it.each([
    ['not a url', 'ISSUER must be an absolute http(s) URL (got "not a url")'],
    ['auth.example.com', 'ISSUER must be an absolute http(s) URL (got "auth.example.com")'],
    ['ftp://auth.example.com', `${NO_QUERY} (got "ftp://auth.example.com")`],
    ['https://auth.example.com?tenant=a', `${NO_QUERY} (got "https://auth.example.com?tenant=a")`],
    ['https://auth.example.com#top', `${NO_QUERY} (got "https://auth.example.com#top")`],
    ['https://auth.example.com#', `${NO_QUERY} (got "https://auth.example.com#")`],
    // An empty query is still a query component (RFC 3986 §3.4); RFC 8414 §2 allows none.
    ['https://auth.example.com?', `${NO_QUERY} (got "https://auth.example.com?")`],
    ['https://auth.example.com/', 'ISSUER must not end with "/" (got "https://auth.example.com/")'],
    ['https://example.com/auth/', 'ISSUER must not end with "/" (got "https://example.com/auth/")'],
  ])('refuses ISSUER=%j', (issuer, problem) => {
    expectProblems({ ISSUER: issuer }, [problem]);
  });

  it.each(['soon', '15', '-5m', '1.5h', '15M', '1w'])('refuses ACCESS_TOKEN_TTL=%j', (ttl) => {
    // '15' is 15 seconds: a valid duration, but below the 30 s minimum.
    expectProblems({ ACCESS_TOKEN_TTL: ttl }, [
      `ACCESS_TOKEN_TTL must be a duration such as 15m, 14d or 10s, from 30s to 3650d (got "${ttl}")`,
    ]);
  });

  it('refuses an idle lifetime longer than the absolute one', () => {
    expectProblems({ REFRESH_TOKEN_IDLE_TTL: '100d' }, [
      'REFRESH_TOKEN_IDLE_TTL must not be longer than REFRESH_TOKEN_ABSOLUTE_TTL',
    ]);
  });

  it('refuses TRUST_PROXY=true in any spelling, and garbage', () => {
    expectProblems({ TRUST_PROXY: 'true' }, [
      'TRUST_PROXY=true is refused: it trusts any X-Forwarded-For; give a hop count or a CIDR list',
    ]);
    const bad = (list: string) =>
      `TRUST_PROXY must be false, a hop count from 1 to 10, or a list of IP addresses/CIDRs (bad: ${list})`;
    expectProblems({ TRUST_PROXY: 'TRUE' }, [bad('TRUE')]);
    expectProblems({ TRUST_PROXY: 'yes' }, [bad('yes')]);
    expectProblems({ TRUST_PROXY: '*' }, [bad('*')]);
    expectProblems({ TRUST_PROXY: '11' }, [bad('11')]);
    expectProblems({ TRUST_PROXY: '10.0.0.0/33' }, [bad('10.0.0.0/33')]);
    expectProblems({ TRUST_PROXY: 'fd00::/129' }, [bad('fd00::/129')]);
    expectProblems({ TRUST_PROXY: '10.0.0.0/8, 300.1.1.1, example.com' }, [bad('300.1.1.1, example.com')]);
    expectProblems({ TRUST_PROXY: '10.0.0.0/8/8' }, [bad('10.0.0.0/8/8')]);
  });

  it('refuses Argon2 settings below the OWASP floor', () => {
    expectProblems({ ARGON2_MEMORY_KIB: '4096' }, ['ARGON2_MEMORY_KIB must be a whole number from 7168 to 4194304 (got "4096")']);
    expectProblems({ ARGON2_ITERATIONS: '1' }, [
      'ARGON2_MEMORY_KIB x ARGON2_ITERATIONS must be at least 35840 (OWASP minimum), got 19456 x 1',
    ]);
    expectProblems({ ARGON2_MEMORY_KIB: '7168', ARGON2_ITERATIONS: '4' }, [
      'ARGON2_MEMORY_KIB x ARGON2_ITERATIONS must be at least 35840 (OWASP minimum), got 7168 x 4',
    ]);
    expectProblems({ ARGON2_ITERATIONS: '0' }, ['ARGON2_ITERATIONS must be a whole number from 1 to 100 (got "0")']);
    expectProblems({ ARGON2_PARALLELISM: '0' }, ['ARGON2_PARALLELISM must be a whole number from 1 to 64 (got "0")']);
    expectProblems({ ARGON2_MEMORY_KIB: 'lots' }, ['ARGON2_MEMORY_KIB must be a whole number from 7168 to 4194304 (got "lots")']);
  });

  it('refuses half a bootstrap admin', () => {
    const problem = 'BOOTSTRAP_ADMIN_USERNAME and BOOTSTRAP_ADMIN_PASSWORD must be set together';
    expectProblems({ BOOTSTRAP_ADMIN_USERNAME: 'admin' }, [problem]);
    expectProblems({ BOOTSTRAP_ADMIN_USERNAME: 'admin', BOOTSTRAP_ADMIN_PASSWORD: '' }, [problem]);
    expectProblems({ BOOTSTRAP_ADMIN_PASSWORD: 'long enough secret' }, [problem]);
  });

  it('refuses an unknown REGISTRATION, LOG_LEVEL or CORS origin', () => {
    expectProblems({ REGISTRATION: 'OPEN' }, ['REGISTRATION must be "open" or "closed" (got "OPEN")']);
    expectProblems({ LOG_LEVEL: 'INFO' }, [
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "INFO")',
    ]);
    expectProblems({ CORS_ORIGINS: '*' }, ['CORS_ORIGINS entries must be origins such as https://app.example.com (got "*")']);
    expectProblems({ CORS_ORIGINS: 'https://app.example.com/' }, [
      'CORS_ORIGINS entries must be origins such as https://app.example.com (got "https://app.example.com/")',
    ]);
  });
});

describe('loadConfig: Redis topologies', () => {
  it('reads REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_MASTER, or REDIS_CLUSTER_NODES', () => {
    expect(loadConfig({ REDIS_URL: 'redis://redis.internal:6379' }).redis).toEqual({ topology: 'single', url: 'redis://redis.internal:6379' });
    expect(
      loadConfig({
        REDIS_SENTINELS: ' sentinel-0.internal:26379, 10.0.0.7:26379 ,[fd00::7]:26380',
        REDIS_SENTINEL_MASTER: 'tessera',
        REDIS_USERNAME: 'tessera',
        REDIS_PASSWORD: ' spaces kept ',
        REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      }).redis,
    ).toEqual({
      topology: 'sentinel',
      sentinels: [
        { host: 'sentinel-0.internal', port: 26379 },
        { host: '10.0.0.7', port: 26379 },
        { host: 'fd00::7', port: 26380 },
      ],
      master: 'tessera',
      username: 'tessera',
      password: ' spaces kept ',
      sentinelPassword: 'sentinel-secret',
    });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-0:6379,redis-1:6379', REDIS_PASSWORD: 'p' }).redis).toEqual({
      topology: 'cluster',
      nodes: [
        { host: 'redis-0', port: 6379 },
        { host: 'redis-1', port: 6379 },
      ],
      username: undefined,
      password: 'p',
    });
    // A blank variable is unset, so a deployment can blank out a REDIS_URL set elsewhere (docker-compose.yml).
    expect(loadConfig({ REDIS_URL: ' ', REDIS_CLUSTER_NODES: 'redis-0:6379' }).redis?.topology).toBe('cluster');
    // Credentials are for Sentinel and Cluster: REDIS_URL carries its own.
    expect(loadConfig({ REDIS_URL: 'redis://redis:6379', REDIS_PASSWORD: 'elsewhere' }).redis).toEqual({ topology: 'single', url: 'redis://redis:6379' });
  });

  it('refuses more than one of the three, a missing master name and malformed lists, with the other problems and never a password', () => {
    const error = configError({
      REDIS_URL: 'redis://:hunter2-url@redis:6379',
      REDIS_SENTINELS: 'sentinel:26379',
      REDIS_CLUSTER_NODES: 'redis-0:6379',
      PORT: 'abc',
    });
    expect([...error.problems].sort()).toEqual(
      ['PORT must be a whole number from 0 to 65535 (got "abc")', 'set at most one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES (got REDIS_URL and REDIS_SENTINELS and REDIS_CLUSTER_NODES)'].sort(),
    );
    expectProblems({ REDIS_URL: 'redis://redis:6379', REDIS_CLUSTER_NODES: 'redis-0:6379' }, [
      'set at most one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES (got REDIS_URL and REDIS_CLUSTER_NODES)',
    ]);
    expectProblems({ REDIS_SENTINELS: 'sentinel-0:26379' }, ['REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the master name the sentinels monitor']);
    expectProblems({ REDIS_SENTINELS: 'sentinel-0:26379', REDIS_SENTINEL_MASTER: 'two names' }, [
      'REDIS_SENTINEL_MASTER must be one name without spaces or commas (got "two names")',
    ]);
    expectProblems({ REDIS_SENTINEL_MASTER: 'tessera', REDIS_SENTINEL_PASSWORD: 'hunter2-sentinel', REDIS_URL: 'redis://redis:6379' }, [
      'REDIS_SENTINEL_MASTER needs REDIS_SENTINELS',
      'REDIS_SENTINEL_PASSWORD needs REDIS_SENTINELS',
    ]);
    const malformed = configError({
      REDIS_SENTINELS: 'sentinel-0:26379,sentinel-1,sentinel-2:0,sentinel-3:65536,,bad_host:1,[not-v6]:1,redis://:hunter2-list@sentinel-4:26379',
      REDIS_SENTINEL_MASTER: 'tessera',
    });
    expect(malformed.problems).toEqual([
      'REDIS_SENTINELS must be a comma-separated list of host:port with ports from 1 to 65535 (bad: "sentinel-1", "sentinel-2:0", "sentinel-3:65536", entry 5, "bad_host:1", "[not-v6]:1", entry 8)',
    ]);
    expectProblems({ REDIS_CLUSTER_NODES: 'redis-0:6379,redis-1:port' }, [
      'REDIS_CLUSTER_NODES must be a comma-separated list of host:port with ports from 1 to 65535 (bad: "redis-1:port")',
    ]);
    for (const secret of ['hunter2-url', 'hunter2-sentinel', 'hunter2-list']) {
      expect(error.message + malformed.message).not.toContain(secret);
    }
  });

  it('refuses a RATE_LIMIT_PREFIX with a hash tag on a cluster, where it would put every counter in one slot', () => {
    expectProblems({ REDIS_CLUSTER_NODES: 'redis-0:6379', RATE_LIMIT_PREFIX: 'tessera:{rl}:' }, [
      'RATE_LIMIT_PREFIX must not hold a hash tag ({...}) with REDIS_CLUSTER_NODES: every counter would land in one slot (got "tessera:{rl}:")',
    ]);
    // An empty {} is no hash tag (the Redis Cluster specification), and elsewhere a tag is harmless.
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-0:6379', RATE_LIMIT_PREFIX: 'tessera:{}:' }).rateLimits.prefix).toBe('tessera:{}:');
    expect(loadConfig({ REDIS_URL: 'redis://redis:6379', RATE_LIMIT_PREFIX: 'tessera:{rl}:' }).rateLimits.prefix).toBe('tessera:{rl}:');
  });
});

describe('loadConfig: refresh grace', () => {
  it('refuses a REFRESH_REUSE_GRACE longer than a minute: a retry window, not a second lifetime', () => {
    expect(() => loadConfig({ REFRESH_REUSE_GRACE: '61s' })).toThrow(
      'REFRESH_REUSE_GRACE must be a duration such as 15m, 14d or 10s, from 0s to 60s (got "61s")',
    );
    expect(loadConfig({ REFRESH_REUSE_GRACE: '60s' }).refreshReuseGrace).toBe(60);
    expect(loadConfig({ REFRESH_REUSE_GRACE: '0s' }).refreshReuseGrace).toBe(0);
  });
});

describe('tessera serve with NODE_ENV=production and no DATABASE_URL', () => {
  afterAll(stopAll); // a serve that did start (the defect) must not outlive the file
  it('exits 78 with one line naming DATABASE_URL, and creates nothing on disk or on the network', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-production-'));
    try {
      const port = await freePort();
      const env = { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', DATA_DIR: join(dir, 'data'), PORT: String(port) };
      const run = await runTessera(['serve'], env);
      expect(run).toEqual({
        code: 78,
        stdout: '',
        stderr: 'Invalid configuration: DATABASE_URL is required when NODE_ENV=production: the embedded database is for development only\n',
      });
      expect(await readdir(dir)).toEqual([]);
      // Nothing listened there: the port is still free to take.
      const probe = createServer();
      await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
      await new Promise<void>((resolve) => probe.close(() => resolve()));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tessera serve with a SHUTDOWN_DELAY or DATABASE_CONNECT_TIMEOUT that does not parse', () => {
  afterAll(stopAll);
  it('exits 78 before reaching for the database, naming them with the other problems', async () => {
    const env = {
      PATH: process.env['PATH'] ?? '',
      DATABASE_URL,
      KEY_ENCRYPTION_KEYS: KEK,
      PORT: 'abc',
      SHUTDOWN_DELAY: 'soon',
      DATABASE_CONNECT_TIMEOUT: '30 seconds',
    };
    expect(await runTessera(['serve'], env)).toEqual({
      code: 78,
      stdout: '',
      stderr: [
        'Invalid configuration:',
        '  - PORT must be a whole number from 0 to 65535 (got "abc")',
        '  - DATABASE_CONNECT_TIMEOUT must be a duration such as 15m, 14d or 10s, from 0s to 3650d (got "30 seconds")',
        '  - SHUTDOWN_DELAY must be a duration such as 15m, 14d or 10s, from 0s to 3650d (got "soon")',
        '',
      ].join('\n'),
    });
  });
});
