import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Exit, freePort, logLines, MAIN, PROCESS_TIMEOUT_MS, runTessera as run, type Spawned, startTessera as start, stopAll, waitUntilReady } from './helpers/process.js';
import { noteSecret } from './helpers/secrets.js';
import { waitFor } from './helpers/wait.js';

/**
 * The newcomer's path, end to end with the built binary: no DATABASE_URL, so `serve` runs PGlite in
 * DATA_DIR and other commands reach it through the control socket. `npm test` builds dist/ first.
 */
async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

let dataDir: string;
/** What a CLI process gets: only DATA_DIR, so it must find the server (no DATABASE_URL, no KEY_ENCRYPTION_KEYS). */
let cliEnv: NodeJS.ProcessEnv;

interface Serving {
  readonly server: Spawned;
  readonly port: number;
  readonly base: string;
  /** Set once the process has exited. */
  exit?: Exit;
}
/** The server on DATA_DIR. Tests that stop it say so; the next test gets it started again. */
let serving: Serving | undefined;

/** A user and a client made through the socket before any test, for the tests that log in. No test changes them. */
const password = `Embedded-${randomBytes(8).toString('hex')}`;
noteSecret('password (embedded test)', password);
let aliceId = '';
let clientSecret = '';

async function serve(): Promise<Serving> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = start(['serve'], { ...cliEnv, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' });
  const started: Serving = { server, port, base };
  void server.exited.then((exit) => (started.exit = exit));
  await waitUntilReady(server, base);
  return started;
}

/** The running server, started again on the same DATA_DIR if a test stopped it (PGlite's first start, its initdb, is the costly one). */
async function running(): Promise<Serving> {
  if (serving === undefined || serving.exit !== undefined) serving = await serve();
  return serving;
}

beforeAll(async () => {
  await access(MAIN).catch(() => {
    throw new Error(`${MAIN} is missing: run npm run build first`);
  });
  dataDir = await mkdtemp(join(tmpdir(), 'tessera-embedded-'));
  cliEnv = { PATH: process.env['PATH'] ?? '', DATA_DIR: dataDir };
  await running();
  const [user, client] = await Promise.all([
    run(['users', 'create', 'alice', '--password-stdin', '--scope', 'profile'], cliEnv, `${password}\n`),
    run(['clients', 'create', '--id', 'web', '--scope', 'profile'], cliEnv),
  ]);
  aliceId = /^id: ([0-9a-f-]{36})\n/.exec(user.stdout)?.[1] ?? fail(`users create: ${user.stderr}`);
  clientSecret = /\nclient_secret: ([A-Za-z0-9_-]{43})\n$/.exec(client.stdout)?.[1] ?? fail(`clients create: ${client.stderr}`);
  noteSecret('client secret (embedded test)', clientSecret);
}, 2 * PROCESS_TIMEOUT_MS);

beforeEach(async () => {
  await running();
}, PROCESS_TIMEOUT_MS);

afterAll(async () => {
  await stopAll();
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

function fail(message: string): never {
  throw new Error(message);
}

const login = ({ base }: Serving, username: string, secret: string) =>
  fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`web:${clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'password', username, password: secret }),
  });

/** SIGTERM, and the exit it ends in. */
async function stop({ server }: Serving): Promise<Exit> {
  server.child.kill('SIGTERM');
  return server.exited;
}

describe('tessera serve on the embedded database', () => {
  it('is ready, with its secrets in DATA_DIR readable by the owner only', async () => {
    const { server, port, base } = await running();
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { database: 'ok', keys: 'ok', rate_limits: 'memory', rate_limit_topology: 'none' } });

    expect((await stat(join(dataDir, 'key-encryption-key'))).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(join(dataDir, 'key-encryption-key'), 'utf8')).trim(), 'base64')).toHaveLength(32);
    expect((await stat(join(dataDir, 'control.sock'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dataDir, 'pgdata'))).isDirectory()).toBe(true);
    expect(await readFile(join(dataDir, 'tessera.lock'), 'utf8')).toMatch(new RegExp(`^${server.child.pid} \\d+\\n$`));

    const line = logLines(server.stdout()).find((each) => each['msg'] === 'tessera is serving');
    expect(line).toMatchObject({ level: 'info', url: base, issuer: `http://localhost:${port}`, database: 'embedded', rate_limits: 'memory' });
  });

  it('runs CLI commands for other processes through its control socket', async () => {
    const { server } = await running();
    const created = await run(['users', 'create', 'bob', '--password-stdin', '--scope', 'profile'], cliEnv, `${password}\n`);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const match = /^id: ([0-9a-f-]{36})\nusername: bob\n$/.exec(created.stdout);
    expect(match).not.toBeNull();
    const bobId = match![1]!;
    // The server did the work: its log has the audit event (a second opener of PGlite would have been refused).
    expect(logLines(server.stdout()).filter((line) => line['event'] === 'user_created' && line['user_id'] === bobId)).toEqual([
      expect.objectContaining({ audit: true, user_id: bobId, actor: 'cli', scopes: ['profile'] }),
    ]);

    const duplicate = await run(['users', 'create', 'BOB', '--password-stdin'], cliEnv, `${password}\n`);
    expect(duplicate).toEqual({ code: 1, stdout: '', stderr: 'error: a user with this username already exists\n' });

    const client = await run(['clients', 'create', '--id', 'bobs-app', '--scope', 'profile'], cliEnv);
    expect(client.stderr).toBe('');
    expect(client.code).toBe(0);
    const secret = /^client_id: bobs-app\ntype: confidential\ngrant_types: password refresh_token\nscopes: profile\nclient_secret: ([A-Za-z0-9_-]{43})\n$/.exec(
      client.stdout,
    );
    expect(secret).not.toBeNull();
    noteSecret('client secret (embedded test)', secret![1]!);
  }, 2 * PROCESS_TIMEOUT_MS);

  it('answers --help itself, without asking the server', async () => {
    await running();
    // Forwarded, `users create --help` would be an unknown option to the server (exit 2).
    const help = await run(['users', 'create', '--help'], cliEnv);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: tessera users create <username>/);
  }, PROCESS_TIMEOUT_MS);

  it('issues an access token that verifies against its JWKS', async () => {
    const current = await running();
    const res = await login(current, 'alice', password);
    const body = (await res.json()) as Record<string, unknown>;
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    // The client may use refresh_token (the default grants), so a refresh token comes too.
    expect(body).toEqual({
      access_token: expect.any(String),
      refresh_token: expect.stringMatching(/^[A-Za-z0-9_-]{43,}$/),
      token_type: 'Bearer',
      expires_in: 900,
      scope: 'profile',
    });
    noteSecret('refresh token (embedded test)', body['refresh_token'] as string);

    const issuer = `http://localhost:${current.port}`;
    const jwks = createRemoteJWKSet(new URL(`${current.base}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(body['access_token'] as string, jwks, {
      issuer,
      audience: issuer,
      typ: 'at+jwt',
      algorithms: ['RS256'],
    });
    expect(protectedHeader).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: expect.any(String) });
    expect(payload).toMatchObject({ sub: aliceId, client_id: 'web', scope: 'profile' });

    const wrong = await login(current, 'alice', `${password}x`);
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });
  });

  it('refuses a second serve on the same DATA_DIR with a clear message', async () => {
    const { server, base } = await running();
    const second = await run(['serve'], { ...cliEnv, PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'info' });
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    expect(second.stderr).toContain(`is already served by process ${server.child.pid}`);
    // The first server is unharmed and still owns the directory.
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await readFile(join(dataDir, 'tessera.lock'), 'utf8')).toMatch(new RegExp(`^${server.child.pid} \\d+\\n$`));
  }, 2 * PROCESS_TIMEOUT_MS);

  it('on SIGTERM finishes the request in flight, then exits 0 and releases DATA_DIR', async () => {
    const current = await running();
    const { server, port, base } = current;
    // A login whose body is only partly sent when the signal arrives. `Expect: 100-continue` makes
    // the server say when it holds the request (RFC 9110 §10.1.1), so the signal surely finds it in flight.
    const body = new URLSearchParams({ grant_type: 'password', username: 'alice', password, client_id: 'web', client_secret: clientSecret }).toString();
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let raw = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (raw += chunk));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await waitFor('100 Continue', () => raw.startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    socket.write(body.slice(0, 10));
    server.child.kill('SIGTERM');
    // No new connections, while the one in flight waits for the rest of its body.
    await waitFor('new connections to be refused', () => fetch(`${base}/healthz`).then(() => false, () => true));
    socket.write(body.slice(10));
    await closed;
    const answer = raw.slice('HTTP/1.1 100 Continue\r\n\r\n'.length);
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
    const token = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    expect(token).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String), refresh_token: expect.any(String) });
    noteSecret('refresh token (embedded test)', token['refresh_token'] as string);

    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(current.exit).toEqual({ code: 0, signal: null });

    const messages = logLines(server.stdout()).map((line) => line['msg']);
    expect(messages).toContain('shutting down');
    expect(messages[messages.length - 1]).toBe('stopped');
    expect(server.stderr()).toBe('');
    expect(await exists(join(dataDir, 'tessera.lock'))).toBe(false);
    // Nothing the server logged contains the password, the client secret or the refresh token.
    expect(server.stdout()).not.toContain(password);
    expect(server.stdout()).not.toContain(clientSecret);
    expect(server.stdout()).not.toContain(token['refresh_token']);
  }, PROCESS_TIMEOUT_MS);

  it('lets the CLI open the unlocked data directory itself afterwards', async () => {
    // Alice was created through the server's socket; with the server stopped, the CLI reads her itself.
    expect(await stop(await running())).toEqual({ code: 0, signal: null });
    expect(await exists(join(dataDir, 'tessera.lock'))).toBe(false);
    const listed = await run(['users', 'list', '--json'], cliEnv);
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toContainEqual({ id: aliceId, username: 'alice', disabled: false, email: null, roles: [], scopes: ['profile'], created_at: expect.any(String) });
    expect(await exists(join(dataDir, 'tessera.lock'))).toBe(false);
  }, 2 * PROCESS_TIMEOUT_MS);
});
