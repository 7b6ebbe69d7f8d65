import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, type Socket } from 'node:net';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { listen, type RunningServer } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { findMismatches } from './helpers/openapi.js';
import { createTestClient, createTestUser, startTestService, testEnv, type TestClient } from './helpers/service.js';

interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Reads one HTTP/1.1 response with a Content-Length off a raw socket. */
function readResponse(socket: Socket): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const [statusLine = '', ...headerLines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
      const length = Number(headers['content-length']);
      const body = buffer.subarray(end + 4);
      if (!(body.length >= length)) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: body.subarray(0, length).toString('utf8') });
    };
    const onClose = () => reject(new Error(`the connection closed before a complete response: ${JSON.stringify(buffer.toString('latin1'))}`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/** 'connected', or the error code of a refused connection. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** GET `path` on a connection of its own, read whole. */
async function getOnNewConnection(port: number, path: string): Promise<RawResponse> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  await once(socket, 'connect');
  const response = readResponse(socket);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  return response;
}

let database: TestDatabase;
const sockets: Socket[] = [];
const servers: RunningServer[] = [];
/** One for the file: every test's process opens the signing key the first one created. */
const KEY_ENCRYPTION_KEYS = randomBytes(32).toString('base64');

beforeAll(async () => {
  database = await createTestDatabase();
});
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const running of servers.splice(0)) running.server.closeAllConnections();
});
afterAll(async () => {
  await database?.drop();
});

/** A serving process as `tessera serve` runs it: prepareDeps, then listen() with onClose closing the database. */
async function serve(env: Env) {
  const service = await startTestService(database, { env: testEnv(database, { KEY_ENCRYPTION_KEYS, PORT: '0', HOST: '127.0.0.1', ...env }) });
  const user = await createTestUser(service);
  const client = await createTestClient(service);
  const onClose = { calls: 0 };
  const running = await listen(service.deps, async () => {
    onClose.calls += 1;
    await service.close();
  });
  servers.push(running);
  const { port } = running.server.address() as AddressInfo;
  return { service, user, client, running, port, onClose };
}

/** A keep-alive connection (as a gateway's pool holds) that has sent the headers and half the body of a password grant. */
async function startLogin(port: number, running: RunningServer, user: { username: string; password: string }, client: TestClient) {
  const body = new URLSearchParams({ grant_type: 'password', username: user.username, password: user.password }).toString();
  const half = Math.floor(body.length / 2);
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  await once(socket, 'connect');
  const response = readResponse(socket);
  response.catch(() => undefined); // awaited (or deliberately not) by the test
  const arrived = once(running.server, 'request');
  socket.write(
    [
      'POST /token HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Connection: keep-alive',
      'Content-Type: application/x-www-form-urlencoded',
      `Authorization: ${client.basic}`,
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body.slice(0, half),
    ].join('\r\n'),
  );
  await arrived; // the server has the headers: the request is in flight
  return { socket, response, rest: body.slice(half) };
}

describe('graceful shutdown', () => {
  it('drain() makes /readyz answer 503 at once, while the server still accepts connections and serves', { timeout: 60_000 }, async () => {
    const { service, running, port, user, client } = await serve({ SHUTDOWN_TIMEOUT: '10m' });
    const readyz = () => getOnNewConnection(port, '/readyz');
    expect((await readyz()).status).toBe(200);
    running.drain();
    const ready = await readyz();
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toEqual({ status: 'shutting_down' });
    expect(ready.headers['retry-after']).toBe('5');
    expect(ready.headers['cache-control']).toBe('no-store');
    expect(ready.headers['connection']).toBe('close');
    expect(await findMismatches({ test: undefined, method: 'GET', path: '/readyz', preflight: false, ...ready, body: Buffer.from(ready.body) })).toEqual([]);
    // Only this listening server drains: another app on the same deps is still ready.
    expect((await request(service.app).get('/readyz')).status).toBe(200);

    expect(await tryConnect(port)).toBe('connected');
    const login = await startLogin(port, running, user, client);
    login.socket.write(login.rest);
    const res = await login.response;
    expect(res.status).toBe(200);
    expect(res.headers['connection']).toBe('close');
    await running.close();
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
  });

  it('lets an in-flight request finish with a complete response, then closes the database and stops', { timeout: 60_000 }, async () => {
    // Long enough that only draining, never the deadline, can end this close().
    const { running, port, user, client, onClose } = await serve({ SHUTDOWN_TIMEOUT: '10m' });
    const login = await startLogin(port, running, user, client);

    const closing = running.close();
    let closed = false;
    void closing.then(() => (closed = true));

    // No new connections from the moment close() is called.
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
    // The database stays open for the request still being served.
    expect(onClose.calls).toBe(0);
    expect(closed).toBe(false);

    login.socket.write(login.rest);
    const res = await login.response;
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const json = JSON.parse(res.body) as Record<string, unknown>;
    expect(json).toMatchObject({ token_type: 'Bearer', expires_in: 900, access_token: expect.any(String) });

    await closing;
    expect(onClose.calls).toBe(1);
    expect(running.server.listening).toBe(false);
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
    // close() is idempotent: a second signal does not close the database twice.
    await running.close();
    expect(onClose.calls).toBe(1);
  });

  it('tells a keep-alive client to close the connection on responses sent while draining', { timeout: 60_000 }, async () => {
    // RFC 9112 §9.6: a server that is about to close a persistent connection sends "Connection: close",
    // so a gateway's pool stops sending further requests on a connection of a stopping replica.
    const { running, port, user, client } = await serve({ SHUTDOWN_TIMEOUT: '10m' });
    const login = await startLogin(port, running, user, client);
    const closing = running.close();
    login.socket.write(login.rest);
    const res = await login.response;
    expect(res.status).toBe(200);
    expect(res.headers['connection']).toBe('close');
    await closing;
  });

  it('ends a request that never completes once SHUTDOWN_TIMEOUT has passed, and still closes the database', { timeout: 60_000 }, async () => {
    const { running, port, user, client, onClose } = await serve({ SHUTDOWN_TIMEOUT: '1s' });
    const login = await startLogin(port, running, user, client); // the rest of the body never comes
    const ended = once(login.socket, 'close');

    await running.close();
    expect(onClose.calls).toBe(1);
    await ended;
    await expect(login.response).rejects.toThrow(/closed before a complete response/);
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
  });
});
