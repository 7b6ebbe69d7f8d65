import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { noteSecret } from './helpers/secrets.js';
import { startTestService, testEnv, type TestService, uniqueName } from './helpers/service.js';
import { loginAdmin } from './security/flow.js';

// How every endpoint that takes parameters reads its body (src/http/form.ts), through /register
// (a form or JSON, no credentials needed), /token (a form only) and the admin API (JSON): one
// reading of the bytes, UTF-8 only, each parameter once, small and uncompressed, never in the URL.

let database: TestDatabase;
let service: TestService;

// Nothing here sends a request before the tests: a body-reading step broken under `npm run mutate`
// must fail a test, not a hook (the vitest runner counts a mutant whose hook failed as survived).
beforeAll(async () => {
  database = await createTestDatabase();
  service = await startTestService(database, { env: testEnv(database, { REGISTRATION: 'open' }) });
});
afterAll(async () => {
  await service?.close();
  await database?.drop();
});

const REPEATED = 'a parameter is repeated';
const NOT_AN_OBJECT = 'the request body must be a JSON object';
const NOT_UTF8 = 'the request body must be encoded in UTF-8';

function newPassword(): string {
  const password = `Bodies-${randomBytes(9).toString('base64url')}`;
  noteSecret('password (request bodies)', password);
  return password;
}

const post = (path: string, type: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  request(service.app).post(path).set('Content-Type', type).set(headers).send(body);
const register = (type: string, body: string | Buffer, headers?: Record<string, string>) => post('/register', type, body, headers);

/** The exact error answer: status, the whole body, and no caching (RFC 6749 §5.1). */
function expectError(res: request.Response, status: number, description: string, error = 'invalid_request'): void {
  expect({ status: res.status, body: res.body }).toEqual({ status, body: { error, error_description: description } });
  expect(res.headers['cache-control']).toBe('no-store');
}

function expectRegistered(res: request.Response, username: string): void {
  expect({ status: res.status, username: res.body.username }).toEqual({ status: 201, username });
  expect(res.headers['cache-control']).toBe('no-store');
}

async function usersNamed(...names: string[]): Promise<string[]> {
  const rows = await database.db.selectFrom('users').select('username').where('username', 'in', names).execute();
  return rows.map((row) => row.username);
}

describe('JSON bodies: one object, each member once', () => {
  it('refuses a member repeated at any depth, and registers nobody', async () => {
    const [name, other] = [uniqueName('dup'), uniqueName('dup')];
    const password = newPassword();
    expectError(await register('application/json', `{"username":"${name}","username":"${other}","password":"${password}"}`), 400, REPEATED);
    expectError(await register('application/json', `{"username":["${name}"],"username":["${other}"],"password":"${password}"}`), 400, REPEATED);
    expectError(await register('application/json', `{"username":"${name}","password":"${password}","x":[{"a":"1","a":"2"}]}`), 400, REPEATED);
    expectError(await register('application/json', `{"user\\u006eame":"${name}","username":"${other}","password":"${password}"}`), 400, REPEATED);
    expect(await usersNamed(name, other)).toEqual([]);
  });

  it('refuses a role whose scopes are given twice at the admin API, so neither list is taken', async () => {
    const { authorization } = await loginAdmin(service);
    const name = uniqueName('dup-role');
    const res = await post('/admin/roles', 'application/json', `{"name":"${name}","scopes":["profile"],"scopes":["admin"]}`, { Authorization: authorization });
    expectError(res, 400, REPEATED);
    expect(await database.db.selectFrom('roles').select('name').where('name', '=', name).execute()).toEqual([]);
  });

  it('refuses a body that is not an object, and names a value that is not a string', async () => {
    for (const body of ['["x"]', '"x"', 'null', '42', '\uFEFF"x"', ' [{"username":"x"}]']) {
      expectError(await register('application/json', body), 400, NOT_AN_OBJECT);
    }
    expectError(await register('application/json', '{"username":'), 400, 'the request body could not be read');
    expectError(await register('application/json', `{"username":7,"password":"${newPassword()}"}`), 400, 'the parameter username must be a string');
  });

  it('reads an object after white space or a byte order mark, with or without charset=utf-8', async () => {
    const names = [uniqueName('ws'), uniqueName('bom'), uniqueName('utf8')];
    expectRegistered(await register('application/json', ` \r\n{"username":"${names[0]}","password":"${newPassword()}"}`), names[0]!);
    expectRegistered(await register('application/json', `\uFEFF{"username":"${names[1]}","password":"${newPassword()}"}`), names[1]!);
    expectRegistered(await register('application/json; charset=UTF-8', JSON.stringify({ username: names[2], password: newPassword() })), names[2]!);
  });
});

describe('forms: application/x-www-form-urlencoded strings, each parameter once', () => {
  it('registers from a form, and refuses a repeated parameter by its name, made printable', async () => {
    const name = uniqueName('form');
    const password = newPassword();
    expectError(await register('application/x-www-form-urlencoded', `username=${name}&password=${password}&a%0A%22b=1&a%0A%22b=2`), 400, 'the parameter a??b is repeated');
    // No bracket syntax (extended: false): `username[]` is a name of its own.
    expectError(await register('application/x-www-form-urlencoded', `username[]=${name}&username[]=x&password=${password}`), 400, 'the parameter username[] is repeated');
    expectRegistered(await register('application/x-www-form-urlencoded', `username=${name}&password=${password}`), name);
  });
});

describe('only UTF-8, small, uncompressed bodies of the two media types, never parameters in the URL', () => {
  it('refuses JSON and forms in another charset (415), and registers nobody', async () => {
    const name = uniqueName('latin');
    const json = JSON.stringify({ username: name, password: newPassword() });
    expectError(await register('application/json; charset=utf-16le', Buffer.from(json, 'utf16le')), 415, NOT_UTF8);
    expectError(await register('application/x-www-form-urlencoded; charset=iso-8859-1', Buffer.from(`username=${name}&password=${newPassword()}`, 'latin1')), 415, NOT_UTF8);
    expect(await usersNamed(name)).toEqual([]);
  });

  it('refuses a body over 16 KiB, a form of more than 32 parameters, and compressed bodies', async () => {
    const name = uniqueName('big');
    const password = newPassword();
    const big = 'x'.repeat(16 * 1024);
    expectError(await register('application/json', JSON.stringify({ username: name, password, big })), 413, 'the request body is too large');
    expectError(await register('application/x-www-form-urlencoded', `username=${name}&password=${password}&big=${big}`), 413, 'the request body is too large');
    const extra = (count: number) => Array.from({ length: count }, (_, i) => `p${i}=1`).join('&');
    expectError(await register('application/x-www-form-urlencoded', `username=${name}&password=${password}&${extra(31)}`), 413, 'the request has too many parameters');
    const gzip = { 'Content-Encoding': 'gzip' };
    expectError(await register('application/json', gzipSync(JSON.stringify({ username: name, password })), gzip), 415, 'the request body encoding is not supported');
    expectError(await register('application/x-www-form-urlencoded', gzipSync(`username=${name}&password=${password}`), gzip), 415, 'the request body encoding is not supported');
    expect(await usersNamed(name)).toEqual([]);
    expectRegistered(await register('application/x-www-form-urlencoded', `username=${name}&password=${password}&${extra(30)}`), name);
  });

  it('refuses other media types, JSON where only a form is taken, and parameters in the URL', async () => {
    const name = uniqueName('type');
    const form = `username=${name}&password=${newPassword()}`;
    expectError(await register('text/plain', form), 400, 'the request body must be application/x-www-form-urlencoded or application/json');
    expectError(await post('/register?lang=en', 'application/x-www-form-urlencoded', form), 400, 'parameters must be sent in the request body, not the URL');
    expect(await usersNamed(name)).toEqual([]);
    const token = JSON.stringify({ grant_type: 'client_credentials' });
    expectError(await post('/token', 'application/json', token), 400, 'the request body must be application/x-www-form-urlencoded');
    // A form gets past that check, to client authentication.
    const res = await post('/token', 'application/x-www-form-urlencoded', 'grant_type=client_credentials');
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
  });
});
