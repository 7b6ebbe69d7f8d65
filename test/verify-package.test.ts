import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPackageRoot } from '../src/package-root.js';
import { createFakeClock } from './helpers/clock.js';
import { type LoopbackTessera, startLoopbackTessera } from './helpers/loopback-tessera.js';
import { createTestClient, createTestUser, passwordGrant, type TestClient } from './helpers/service.js';

/*
 * @tessera-auth/verify as another team gets it (issue 18): `npm pack` of the workspace, installed
 * into an empty directory beside Express, offline (no registry is reachable; every package comes
 * from a tarball packed here, Express and jose from this repository's node_modules), then used by
 * an Express app and a plain node:http server in a process of their own against a Tessera on
 * loopback. What that directory's node_modules holds is the proof that nothing of the server came.
 */

const REPOSITORY = findPackageRoot();
const AUDIENCE = 'orders-api';
const NOT_VALID = 'the access token is not valid';

interface LockEntry {
  readonly version?: string;
  readonly dependencies?: Record<string, string>;
}

/** `names` and everything they depend on, as package-lock.json places them (node's lookup, upward). */
function closureInLockfile(names: readonly string[]): string[] {
  const packages = (JSON.parse(readFileSync(join(REPOSITORY, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages;
  const locate = (from: string, name: string): string => {
    for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
      const path = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (packages[path]) return path;
      if (dir === '') throw new Error(`${name} (needed by ${from || 'the root'}) is not in package-lock.json`);
    }
  };
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const dependency of Object.keys(packages[path]!.dependencies ?? {})) visit(locate(path, dependency));
  };
  for (const name of names) visit(locate('', name));
  return [...seen];
}

/** Package names under a node_modules directory (`@scope/name` for scoped ones). */
function installedNames(nodeModules: string): string[] {
  return readdirSync(nodeModules)
    .filter((entry) => !entry.startsWith('.'))
    .flatMap((entry) => (entry.startsWith('@') ? readdirSync(join(nodeModules, entry)).map((name) => `${entry}/${name}`) : [entry]))
    .sort();
}

/** npm without what a surrounding `npm test` puts in the environment (npm_config_*, npm_package_*). */
function npm(args: readonly string[], cwd: string): string {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

/** The downstream service, written as its team would: plain ESM importing the installed packages. */
const SERVICE = `
import { createServer } from 'node:http';
import express from 'express';
import { createVerifier, VerificationError } from '@tessera-auth/verify';

const [issuer, audience] = process.argv.slice(2);
const verifier = createVerifier({ issuer, audience });

const app = express();
app.get('/orders', verifier.requireScopes('orders:read'), (req, res) => res.json({ for: req.auth.sub, via: 'express' }));

const plain = createServer(async (req, res) => {
  try {
    const auth = await verifier.verifyRequest(req, { scopes: ['orders:read'] });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ for: auth.sub, via: 'node:http' }));
  } catch (error) {
    if (!(error instanceof VerificationError)) throw error;
    const answer = verifier.errorResponse(error);
    res.writeHead(answer.status, { ...answer.headers, 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  }
});

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
const ports = { express: await listen(createServer(app)), plain: await listen(plain) };
const resolved = { verify: import.meta.resolve('@tessera-auth/verify'), express: import.meta.resolve('express') };
console.log(JSON.stringify({ ports, resolved }));
`;

let scratch: string;
let app: string;
let packed: { name: string; filename: string; files: { path: string }[] };
let tessera: LoopbackTessera;
let client: TestClient;
let narrowClient: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;
let service: ChildProcess | undefined;
let ports: { express: number; plain: number };
let resolved: { verify: string; express: string };

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'tessera-verify-package-'));
  const tarballs = join(scratch, 'tarballs');
  app = join(scratch, 'service');
  mkdirSync(app);

  mkdirSync(tarballs);
  // The verifier as it would be published, from the build that the tests import too (`npm run build`
  // builds it first): its prepack script would rebuild it under other test files' feet.
  [packed] = JSON.parse(npm(['pack', '--ignore-scripts', '--workspace', '@tessera-auth/verify', '--pack-destination', tarballs, '--json'], REPOSITORY)) as [typeof packed];
  // Express and jose (and what they need) from this repository's node_modules, packed as they are.
  const beside = closureInLockfile(['express', 'jose']);
  npm(['pack', '--ignore-scripts', '--pack-destination', tarballs, ...beside.map((path) => `./${path}`)], REPOSITORY);

  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'orders-service', private: true, type: 'module' }));
  writeFileSync(join(app, 'service.mjs'), SERVICE);
  // --offline and a registry nobody listens on: any package not among the tarballs fails the install.
  const all = readdirSync(tarballs).map((file) => join(tarballs, file));
  npm(['install', '--offline', '--registry', 'http://127.0.0.1:9/', '--ignore-scripts', '--no-audit', '--no-fund', ...all], app);

  tessera = await startLoopbackTessera({ clock: createFakeClock(Date.now()) });
  client = await createTestClient(tessera.service, { audience: [AUDIENCE], scopes: ['profile', 'orders:read'] });
  narrowClient = await createTestClient(tessera.service, { audience: [AUDIENCE], scopes: ['profile'] });
  user = await createTestUser(tessera.service, { scopes: ['profile', 'orders:read'] });

  service = spawn(process.execPath, ['service.mjs', tessera.issuer, AUDIENCE], { cwd: app, stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await createInterface({ input: service.stdout! })[Symbol.asyncIterator]().next();
  if (first.done) throw new Error('the downstream service exited before it listened');
  ({ ports, resolved } = JSON.parse(first.value as string) as { ports: typeof ports; resolved: typeof resolved });
}, 180_000);

afterAll(async () => {
  if (service && service.exitCode === null) {
    const exited = once(service, 'exit');
    service.kill();
    await exited;
  }
  await tessera?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function tokenFor(forClient: TestClient, scope: string): Promise<string> {
  const res = await passwordGrant(tessera.service.app, forClient, user, { scope });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

async function get(port: number, token?: string): Promise<{ status: number; body: unknown; challenge: string | null }> {
  const response = await fetch(`http://127.0.0.1:${port}/orders`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json(), challenge: response.headers.get('www-authenticate') };
}

describe('the packed verifier', () => {
  it('holds the built module, its type declarations, README and CHANGELOG, and no source', () => {
    expect(packed.name).toBe('@tessera-auth/verify');
    const files = packed.files.map((file) => file.path).sort();
    expect(files).toEqual(expect.arrayContaining(['CHANGELOG.md', 'README.md', 'dist/index.d.ts', 'dist/index.js', 'package.json']));
    for (const file of files) expect(file).toMatch(/^(CHANGELOG\.md|README\.md|package\.json|dist\/[a-z-]+\.(js|d\.ts))$/);
  });

  it('installs beside Express with nothing of the server: only the verifier, jose and what Express needs', () => {
    const installed = installedNames(join(app, 'node_modules'));
    const expected = ['@tessera-auth/verify', ...closureInLockfile(['express', 'jose']).map((path) => path.slice('node_modules/'.length))].sort();
    expect(installed).toEqual(expected);
    const server = JSON.parse(readFileSync(join(REPOSITORY, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const serverOnly = Object.keys(server.dependencies).filter((name) => name !== 'express' && name !== 'jose');
    expect(serverOnly).toEqual(expect.arrayContaining(['@electric-sql/pglite', 'argon2', 'pg', 'ioredis', 'kysely']));
    for (const name of serverOnly) expect(installed).not.toContain(name);
    // The service resolves both from its own node_modules, not from this repository's.
    expect(resolved.verify).toBe(`file://${app}/node_modules/@tessera-auth/verify/dist/index.js`);
    expect(resolved.express.startsWith(`file://${app}/node_modules/express/`)).toBe(true);
  });
});

describe.each([
  ['an Express app', 'express'],
  ['a plain node:http server', 'plain'],
] as const)('%s using the installed verifier against a running Tessera', (_name, which) => {
  it('lets a token with the scope through, with its subject', async () => {
    expect(await get(ports[which], await tokenFor(client, 'orders:read'))).toEqual({
      status: 200,
      body: { for: user.id, via: which === 'express' ? 'express' : 'node:http' },
      challenge: null,
    });
  });

  it('answers 401 with the bare challenge without a token, and invalid_token for a bad one', async () => {
    expect(await get(ports[which])).toEqual({
      status: 401,
      body: { error: 'invalid_token', error_description: 'a bearer access token is required' },
      challenge: `Bearer realm="${AUDIENCE}"`,
    });
    const token = await tokenFor(client, 'orders:read');
    const tampered = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    expect(await get(ports[which], tampered)).toEqual({
      status: 401,
      body: { error: 'invalid_token', error_description: NOT_VALID },
      challenge: `Bearer realm="${AUDIENCE}", error="invalid_token", error_description="${NOT_VALID}"`,
    });
  });

  it('answers 403 insufficient_scope to a valid token without the scope', async () => {
    expect(await get(ports[which], await tokenFor(narrowClient, 'profile'))).toEqual({
      status: 403,
      body: { error: 'insufficient_scope', error_description: 'the access token lacks a required scope' },
      challenge: `Bearer realm="${AUDIENCE}", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read"`,
    });
  });
});
