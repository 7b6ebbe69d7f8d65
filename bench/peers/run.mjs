// `npm run bench -- --peers [--quick] [--only refresh,...]` (issue 17): Tessera beside two real
// peers in one run, on the same machine, each as one process with NODE_ENV=production against a
// database of its own: @node-oauth/oauth2-server 5.3 on Express 5 (./oauth2-server.mjs) and panva's
// oidc-provider 9.13 (./oidc-provider.mjs). Every answer is checked equivalent first
// (./equivalence.mjs); then each operation is measured ABAB (Tessera, peer, Tessera, peer, ...),
// and the medians over rounds are compared: server CPU per request and requests per second.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import os, { tmpdir } from 'node:os';
import argon2 from 'argon2';
import pg from 'pg';
import {
  answers,
  basic,
  commit,
  deleteRedisKeys,
  form,
  FORM,
  freePort,
  load,
  memoryOf,
  postForm,
  round,
  settle,
  startProcess,
  table,
  throwawayDatabases,
  withDatabase,
} from '../harness.mjs';
import { PASSWORD, seedTessera, tesseraEnv, USERS } from '../tessera.mjs';
import { PERF_NODE_FLAGS } from '../perf.mjs';
import { checkEquivalence, UNEQUAL } from './equivalence.mjs';
import { ARGON2, clientRow, SCHEMA as OAUTH2_SCHEMA } from './oauth2-server-model.mjs';
import { SCHEMA as OIDC_SCHEMA } from './oidc-adapter.mjs';

const CONNECTIONS = 64;
const PASSWORD_CONNECTIONS = 16;
const RESOURCE = 'urn:bench:api';

/**
 * Issue 17's targets, Tessera / peer: CPU per request at most `cpu` times the peer's, requests per
 * second at least `rate` times. `tessera` and `peer` name the requests of each side (see `sides`).
 */
const OPERATIONS = {
  refresh: { label: 'refresh with rotation, vs oauth2-server', peer: 'oauth2-server', cpu: 0.8, rate: 1.1 },
  clientCredentials: { label: 'client credentials, vs oauth2-server', peer: 'oauth2-server', cpu: 0.8, rate: 1.1 },
  clientCredentialsOidc: { label: 'client credentials, vs oidc-provider', peer: 'oidc-provider', cpu: 0.8, rate: 1.1 },
  introspection: { label: 'introspection, vs oidc-provider', peer: 'oidc-provider', cpu: 0.9, rate: 1.1 },
  password: { label: 'password grant, vs oauth2-server', peer: 'oauth2-server', cpu: 1.0, rate: 1.0 },
};

export async function runPeers({ run, quick, only, json, threads, perf = false, baseline, serverFlags = [], adminDatabaseUrl, redisUrl }) {
  const mode = quick ? { name: 'quick', seconds: 3, warmup: 1, rounds: 2 } : { name: 'full', seconds: 15, warmup: 3, rounds: 3 };
  const unknown = only?.filter((name) => !(name in OPERATIONS)) ?? [];
  if (unknown.length > 0) throw new Error(`--only: no operation ${unknown.join(', ')} (there are ${Object.keys(OPERATIONS).join(', ')})`);
  const operations = Object.keys(OPERATIONS).filter((name) => only === undefined || only.includes(name));
  const names = {
    tessera: `tessera_bench_${run}`,
    oauth2: `tessera_bench_${run}_oauth2`,
    oidc: `tessera_bench_${run}_oidc`,
    ...(baseline === undefined ? {} : { baseline: `tessera_bench_${run}_baseline` }),
  };
  const url = (name) => withDatabase(adminDatabaseUrl, name);
  const redisPrefix = `tessera-bench:${run}:`;
  const logFile = join(tmpdir(), `tessera-bench-${run}.log`);
  const started = performance.now();
  const databases = await throwawayDatabases(adminDatabaseUrl, Object.values(names));
  const servers = [];
  try {
    // --perf: every server names its JIT frames for perf (bench/perf.mjs).
    const start = async (script, argv, env, ready, flags = []) => {
      const server = await startProcess(script, argv, env, ready, { logFile, flags: [...flags, ...(perf ? PERF_NODE_FLAGS : [])] });
      servers.push(server);
      return server;
    };

    // Tessera, exactly as `npm run bench` runs it: a first start migrates and makes a key.
    const tesseraPort = await freePort();
    // At its defaults: the per-client limit off (CLIENT_RATE_LIMIT unset), as the peers have none.
    const env = tesseraEnv({ port: tesseraPort, databaseUrl: url(names.tessera), redisUrl, redisPrefix, keyEncryptionKey: randomBytes(32).toString('base64'), clientRateLimit: false });
    const tesseraBase = `http://127.0.0.1:${tesseraPort}`;
    const first = await start('dist/src/cli/main.js', ['serve'], env, answers(`${tesseraBase}/readyz`));
    await first.stop();
    servers.pop();
    const fixtures = await seedTessera(env);
    const tessera = await start('dist/src/cli/main.js', ['serve'], env, answers(`${tesseraBase}/readyz`), serverFlags);

    // oauth2-server: its schema, the same users (Argon2id at Tessera's parameters) and clients.
    const oauth2Secrets = await seedOauth2Server(url(names.oauth2));
    const oauth2Port = await freePort();
    const oauth2Base = `http://127.0.0.1:${oauth2Port}`;
    const peerEnv = (port, database, extra = {}) => ({ PATH: process.env.PATH, NODE_ENV: 'production', PORT: String(port), PEER_DATABASE_URL: url(database), ...extra });
    const oauth2 = await start('bench/peers/oauth2-server.mjs', [], peerEnv(oauth2Port, names.oauth2), answers(`${oauth2Base}/.well-known/jwks.json`));

    // oidc-provider: its adapter's table; static clients.
    await withClient(url(names.oidc), (db) => db.query(OIDC_SCHEMA));
    const oidcSecret = randomBytes(32).toString('base64url');
    const oidcClients = [
      { client_id: 'bench-service', client_secret: oidcSecret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'orders:read' },
    ];
    const oidcPort = await freePort();
    const oidcBase = `http://127.0.0.1:${oidcPort}`;
    const oidc = await start('bench/peers/oidc-provider.mjs', [], peerEnv(oidcPort, names.oidc, { PEER_CLIENTS: JSON.stringify(oidcClients), PEER_RESOURCE: RESOURCE }), answers(`${oidcBase}/.well-known/openid-configuration`));

    // The floor (bench/floor.mjs): bare Express doing only the work an operation cannot avoid, each
    // the cheapest way (no Redis command: Tessera makes none on a successful request here). Measured
    // in the same rounds, it bounds what any Express implementation can reach against the peer.
    await withClient(url(names.tessera), async (db) => {
      await db.query('create table floor_rows (id integer primary key, n integer not null)');
      await db.query('insert into floor_rows select i, 0 from generate_series(0, 63) as i');
    });
    const floorPort = await freePort();
    const floorBase = `http://127.0.0.1:${floorPort}`;
    const floorEnv = { PATH: process.env.PATH, PORT: String(floorPort), WEB_CONCURRENCY: '1', FLOOR_DATABASE_URL: url(names.tessera), FLOOR_REDIS_URL: redisUrl, FLOOR_REDIS_PREFIX: `${redisPrefix}floor:` };
    const floor = await start('bench/floor.mjs', [], floorEnv, answers(`${floorBase}/`));

    // --baseline <checkout>: that build of Tessera, set up as this one, is every operation's peer.
    let baselineSide;
    if (baseline !== undefined) {
      const port = await freePort();
      const baselineEnv = { ...env, PORT: String(port), DATABASE_URL: url(names.baseline), RATE_LIMIT_PREFIX: `${redisPrefix}baseline:` };
      const script = join(baseline, 'dist/src/cli/main.js');
      await (await start(script, ['serve'], baselineEnv, answers(`http://127.0.0.1:${port}/readyz`))).stop();
      servers.pop();
      const seeded = await seedTessera(baselineEnv);
      // Without --server-flags: a flag is measured against the same build without it.
      const server = await start(script, ['serve'], baselineEnv, answers(`http://127.0.0.1:${port}/readyz`));
      baselineSide = { ...sidesOf(server.pid, `http://127.0.0.1:${port}`, seeded), name: `Tessera at ${baseline}` };
    }

    const sides = {
      tessera: { name: 'Tessera', ...sidesOf(tessera.pid, tesseraBase, fixtures) },
      'oauth2-server': { name: 'oauth2-server', pid: oauth2.pid, base: oauth2Base, token: '/token', jwks: '/.well-known/jwks.json', gateway: oauth2Secrets.gateway, service: oauth2Secrets.service },
      'oidc-provider': { name: 'oidc-provider', pid: oidc.pid, base: oidcBase, token: '/token', jwks: '/jwks', service: basic('bench-service', oidcSecret), introspect: '/token/introspection', introspector: basic('bench-service', oidcSecret), resource: RESOURCE },
    };
    if (baselineSide !== undefined) sides.baseline = baselineSide;
    const idle = Object.fromEntries(Object.entries(sides).map(([key, side]) => [key, memoryOf(side.pid).rssMb]));

    console.log(`Tessera ${commit()} beside its peers, ${mode.name} mode: ${os.cpus().length} x ${os.cpus()[0]?.model}, Node ${process.version}; one process each, NODE_ENV=production`);
    const equivalence = await checkEquivalence(sides, fixtures.users[0], PASSWORD);
    for (const line of equivalence.lines) console.log(line);
    if (!equivalence.ok) throw new Error('the answers are not equivalent: nothing measured');
    console.log(`\nUnequal by design (the peers do less):\n${UNEQUAL.map((line) => `- ${line}`).join('\n')}\n`);

    const results = {};
    for (const name of operations) {
      const operation = OPERATIONS[name];
      const peer = sides.baseline ?? sides[operation.peer];
      const peerName = sides.baseline === undefined ? operation.peer : 'baseline';
      const pair = { tessera: await scenarioFor(name, sides.tessera, fixtures.users), peer: await scenarioFor(name, peer, fixtures.users) };
      const measured = [['tessera', sides.tessera], ['peer', peer]];
      const floorRoute = FLOOR_ROUTES[name];
      if (floorRoute !== undefined) {
        const body = form({ token: 'x'.repeat(43) });
        pair.floor = { options: () => ({ url: `${floorBase}${floorRoute}`, method: 'POST', headers: { 'content-type': FORM }, body }), repair: async () => {} };
        measured.push(['floor', { pid: floor.pid }]);
      }
      const rounds = [];
      for (let round = 0; round < mode.rounds; round += 1) {
        const row = {};
        for (const [key, side] of measured) {
          const scenario = pair[key];
          // Each window starts on a server that is idle: no requests left over from the one before.
          await settle(side.pid);
          await load(scenario.options(), side.pid, { connections: CONNECTIONS, seconds: mode.warmup });
          await scenario.repair();
          await settle(side.pid);
          row[key] = await load(scenario.options(), side.pid, { connections: CONNECTIONS, seconds: mode.seconds, threads, perf: perf && `${name} round ${round + 1}, ${key}` });
          await scenario.repair();
        }
        rounds.push(row);
        row.cpuRatio = ratio(row.tessera.serverCpuMsPerRequest, row.peer.serverCpuMsPerRequest);
        row.rateRatio = ratio(row.tessera.requestsPerSecond, row.peer.requestsPerSecond);
        if (row.floor) row.floorCpuRatio = ratio(row.floor.serverCpuMsPerRequest, row.peer.serverCpuMsPerRequest);
        const floorPart = row.floor ? `, floor ${floorRoute} ${row.floor.requestsPerSecond}/s ${row.floor.serverCpuMsPerRequest} ms CPU/req` : '';
        console.log(`${name} round ${round + 1}: Tessera ${row.tessera.requestsPerSecond}/s ${row.tessera.serverCpuMsPerRequest} ms CPU/req, ${peerName} ${row.peer.requestsPerSecond}/s ${row.peer.serverCpuMsPerRequest} ms CPU/req${floorPart} (T/peer CPU ${row.cpuRatio}, req/s ${row.rateRatio}), errors ${row.tessera.errors} + ${row.peer.errors}`);
      }
      results[name] = summarize(operation, rounds);
    }
    const memory = Object.fromEntries(Object.entries(sides).map(([key, side]) => [key, { idleRssMb: idle[key], ...memoryOf(side.pid) }]));
    const report = {
      date: new Date().toISOString(),
      commit: commit(),
      mode: mode.name,
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGb: round(os.totalmem() / 2 ** 30), node: process.version, loadAverage: os.loadavg().map((each) => round(each, 2)) },
      setup: { connections: CONNECTIONS, passwordConnections: PASSWORD_CONNECTIONS, rounds: mode.rounds, warmupSeconds: mode.warmup, seconds: mode.seconds, argon2: fixtures.argon2, argon2Concurrency: fixtures.argon2Concurrency },
      peers: { 'oauth2-server': '@node-oauth/oauth2-server 5.3.0 on express 5.3.0', 'oidc-provider': 'oidc-provider 9.13.3' },
      equivalence: equivalence.lines,
      unequal: UNEQUAL,
      operations: results,
      memory,
      runSeconds: round((performance.now() - started) / 1000),
    };
    print(report);
    const file = json ?? `bench/results/${report.date.replace(/[:.]/g, '-')}-${report.commit}-peers.json`;
    await mkdir('bench/results', { recursive: true });
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nJSON: ${file}`);
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await databases.drop();
    await deleteRedisKeys(redisUrl, redisPrefix);
    rmSync(logFile, { force: true });
  }
}

/** How the run reaches a Tessera server seeded by seedTessera (bench/tessera.mjs). */
function sidesOf(pid, base, fixtures) {
  return { pid, base, token: '/token', jwks: '/.well-known/jwks.json', gateway: fixtures.gateway, service: fixtures.service, introspect: '/introspect', introspector: fixtures.gateway };
}

/** The oauth2-server peer's tables, the same 64 users as Tessera's, and its two clients. */
async function seedOauth2Server(databaseUrl) {
  const gateway = randomBytes(32).toString('base64url');
  const service = randomBytes(32).toString('base64url');
  await withClient(databaseUrl, async (db) => {
    await db.query(OAUTH2_SCHEMA);
    await db.query('insert into clients values ($1, $2, $3, $4), ($5, $6, $7, $8)', [
      ...clientRow('bench-gateway', gateway, ['password', 'refresh_token'], ['profile', 'orders:read']),
      ...clientRow('bench-service', service, ['client_credentials'], ['orders:read']),
    ]);
    const users = await Promise.all(
      Array.from({ length: USERS }, async (_, i) => [`bench-user-${i}`, await argon2.hash(PASSWORD, ARGON2)]),
    );
    for (const [username, hash] of users) {
      await db.query('insert into users values (gen_random_uuid(), $1, $2, $3)', [username, hash, ['profile', 'orders:read']]);
    }
  });
  return { gateway: basic('bench-gateway', gateway), service: basic('bench-service', service) };
}

async function withClient(connectionString, work) {
  const db = new pg.Client({ connectionString });
  await db.connect();
  try {
    return await work(db);
  } finally {
    await db.end();
  }
}

/**
 * The load of `name` against `side`: `options()` makes autocannon's options for one run; `repair()`
 * runs after each, outside the measured window (a refresh chain whose last answer was cut off when
 * autocannon stopped gets a fresh login, on both sides alike, so that no measured request is an error).
 */
async function scenarioFor(name, side, users) {
  const url = `${side.base}${side.token}`;
  const none = async () => {};
  const login = (username) => postForm(url, side.gateway, { grant_type: 'password', username, password: PASSWORD });
  switch (name) {
    case 'password': {
      let next = 0;
      return {
        options: () => ({
          url,
          connections: PASSWORD_CONNECTIONS,
          method: 'POST',
          headers: { 'content-type': FORM, authorization: side.gateway },
          requests: [{ setupRequest: (req) => ({ ...req, body: form({ grant_type: 'password', username: users[next++ % USERS], password: PASSWORD }) }) }],
        }),
        repair: none,
      };
    }
    case 'refresh': {
      // Each connection rotates a chain of its own, as a gateway's sessions do.
      const chains = await Promise.all(Array.from({ length: CONNECTIONS }, async (_, i) => ({ user: users[i % USERS], token: (await login(users[i % USERS])).refresh_token, pending: false })));
      return {
        options: () => {
          let slot = 0;
          return {
            url,
            setupClient: (client) => {
              const chain = chains[slot++];
              client.setRequests([
                {
                  method: 'POST',
                  path: side.token,
                  headers: { 'content-type': FORM, authorization: side.gateway },
                  setupRequest: (req) => {
                    chain.pending = true;
                    return { ...req, body: form({ grant_type: 'refresh_token', refresh_token: chain.token }) };
                  },
                  onResponse: (status, body) => {
                    if (status === 200) chain.token = JSON.parse(body).refresh_token;
                    chain.pending = false;
                  },
                },
              ]);
            },
          };
        },
        async repair() {
          for (const chain of chains.filter((each) => each.pending)) {
            chain.token = (await login(chain.user)).refresh_token;
            chain.pending = false;
          }
        },
      };
    }
    case 'clientCredentials':
    case 'clientCredentialsOidc': {
      const body = form({ grant_type: 'client_credentials', scope: 'orders:read', ...(side.resource ? { resource: side.resource } : {}) });
      return { options: () => ({ url, method: 'POST', headers: { 'content-type': FORM, authorization: side.service }, body }), repair: none };
    }
    case 'introspection': {
      // Tessera: a user's access token (a JWT, then the user and session row); oidc-provider: an
      // opaque client-credentials token (its row). Each read by the client it was issued to.
      const token = side.resource
        ? (await postForm(url, side.service, { grant_type: 'client_credentials', scope: 'orders:read' })).access_token
        : (await login(users[0])).access_token;
      const body = form({ token });
      return { options: () => ({ url: `${side.base}${side.introspect}`, method: 'POST', headers: { 'content-type': FORM, authorization: side.introspector }, body }), repair: none };
    }
    default:
      throw new Error(`no scenario ${name}`);
  }
}

/**
 * The floor route doing each operation's unavoidable work (bench/floor.mjs): a form body, and then:
 * a signature (client credentials); one statement that reads and advances a row, and a signature
 * (refresh); a verification and a read (introspection). The password grant's bound is
 * Argon2id itself, the same on both sides.
 */
const FLOOR_ROUTES = { refresh: '/rotate', clientCredentials: '/sign', clientCredentialsOidc: '/sign', introspection: '/read-verify' };

const ratio = (a, b) => round(a / b, 2);

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

function summarize(operation, rounds) {
  const of = (key, field) => median(rounds.map((row) => row[key][field]));
  const tessera = { requestsPerSecond: round(of('tessera', 'requestsPerSecond')), serverCpuMsPerRequest: round(of('tessera', 'serverCpuMsPerRequest'), 3) };
  const peer = { requestsPerSecond: round(of('peer', 'requestsPerSecond')), serverCpuMsPerRequest: round(of('peer', 'serverCpuMsPerRequest'), 3) };
  // The targets are read on the ratio of the medians; the median of each round's own ratio (the
  // two sides of a round ran back to back) is kept beside it as a check on the machine's drift.
  const cpuRatio = ratio(tessera.serverCpuMsPerRequest, peer.serverCpuMsPerRequest);
  const rateRatio = ratio(tessera.requestsPerSecond, peer.requestsPerSecond);
  const errors = rounds.reduce((sum, row) => sum + row.tessera.errors + row.peer.errors + (row.floor?.errors ?? 0), 0);
  const floor = rounds[0].floor ? { requestsPerSecond: round(of('floor', 'requestsPerSecond')), serverCpuMsPerRequest: round(of('floor', 'serverCpuMsPerRequest'), 3) } : undefined;
  // How much the machine moved: the spread of each side's req/s over its rounds (max / min).
  const spread = (key) => round(Math.max(...rounds.map((row) => row[key].requestsPerSecond)) / Math.min(...rounds.map((row) => row[key].requestsPerSecond)), 2);
  return {
    label: operation.label,
    peer: operation.peer,
    tessera,
    peerResult: peer,
    cpuRatio,
    cpuRatioByRound: round(median(rounds.map((row) => row.cpuRatio)), 2),
    cpuTarget: operation.cpu,
    cpuMet: cpuRatio <= operation.cpu,
    // What the floor costs against the peer: no Express implementation does better than this on
    // this machine (a CPU target below it cannot be met without leaving Express).
    floor,
    floorCpuRatio: floor ? ratio(floor.serverCpuMsPerRequest, peer.serverCpuMsPerRequest) : undefined,
    rateRatio,
    rateRatioByRound: round(median(rounds.map((row) => row.rateRatio)), 2),
    rateTarget: operation.rate,
    rateMet: rateRatio >= operation.rate,
    errors,
    spread: { tessera: spread('tessera'), peer: spread('peer') },
    rounds,
  };
}

function print({ operations, memory, machine, runSeconds }) {
  console.log('');
  const rows = [['operation (medians over rounds)', 'Tessera req/s', 'peer req/s', 'Tessera CPU ms/req', 'peer CPU ms/req', 'CPU/req T/peer', 'by round', 'target', '', 'req/s T/peer', 'by round', 'target', '', 'floor CPU/req / peer', 'errors', 'round spread T, peer']];
  for (const each of Object.values(operations)) {
    rows.push([
      each.label,
      each.tessera.requestsPerSecond,
      each.peerResult.requestsPerSecond,
      each.tessera.serverCpuMsPerRequest,
      each.peerResult.serverCpuMsPerRequest,
      each.cpuRatio,
      each.cpuRatioByRound,
      `<= ${each.cpuTarget}`,
      each.cpuMet ? 'met' : 'MISSED',
      each.rateRatio,
      each.rateRatioByRound,
      `>= ${each.rateTarget}`,
      each.rateMet ? 'met' : 'MISSED',
      each.floorCpuRatio ?? '-',
      each.errors,
      `${each.spread.tessera}, ${each.spread.peer}`,
    ]);
  }
  table(rows);
  const errors = Object.values(operations).reduce((sum, each) => sum + each.errors, 0);
  console.log(`\nzero errors: ${errors === 0 ? 'ok' : `MISSED (${errors})`}`);
  console.log(`RSS at the end (MB, idle in brackets): ${Object.entries(memory).map(([key, m]) => `${key} ${m.rssMb} (${m.idleRssMb})`).join(', ')}`);
  console.log(`load average at the end ${machine.loadAverage.join(' ')} on ${machine.cpus} cores (the machine is shared: the spread column is how far each side's req/s moved between its rounds); run took ${runSeconds} s`);
}
