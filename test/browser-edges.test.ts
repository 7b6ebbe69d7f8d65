import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { createTestClient, createTestUser, passwordGrant, startTestService, testEnv, type TestService } from './helpers/service.js';

let database: TestDatabase;
let open: TestService;
let closed: TestService;
/** Every instance in this file shares one database, so they share its key-encryption key. */
let env: Env;
const APP = 'https://app.example.com';

beforeAll(async () => {
  database = await createTestDatabase();
  env = testEnv(database);
  open = await startTestService(database, { env: { ...env, CORS_ORIGINS: `${APP}, https://admin.example.com`, REGISTRATION: 'open' } });
  closed = await startTestService(database, { env });
});
afterAll(async () => {
  await open?.close();
  await closed?.close();
  await database?.drop();
});

describe('CORS (off by default, an allow-list when on)', () => {
  it('answers a preflight from an allowed origin, echoing it and never *', async () => {
    const res = await request(open.app).options('/token').set('Origin', APP).set('Access-Control-Request-Method', 'POST').set('Access-Control-Request-Headers', 'content-type');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(res.headers['access-control-allow-methods']).toBe('GET, HEAD, POST');
    expect(res.headers['access-control-allow-headers']).toBe('Authorization, Content-Type');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    expect(res.headers['vary']).toContain('Origin');
  });

  it('gives an origin not on the list no CORS headers, in a preflight or a request', async () => {
    const preflight = await request(open.app).options('/token').set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    expect(preflight.headers['access-control-allow-methods']).toBeUndefined();
    const real = await request(open.app).get('/.well-known/jwks.json').set('Origin', 'https://evil.example');
    expect(real.status).toBe(200);
    expect(real.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('marks real responses (errors too) for an allowed origin and exposes the headers clients need', async () => {
    const res = await request(open.app).post('/token').set('Origin', APP).type('form').send({ grant_type: 'password' });
    expect(res.status).toBe(401);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(res.headers['access-control-expose-headers']).toContain('WWW-Authenticate');
  });

  it('sends no CORS headers at all when CORS_ORIGINS is unset', async () => {
    const res = await request(closed.app).options('/token').set('Origin', APP).set('Access-Control-Request-Method', 'POST');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.status).toBe(405);
  });
});

describe('self-registration (REGISTRATION=open only)', () => {
  it('does not exist when registration is closed', async () => {
    const res = await request(closed.app).post('/register').send({ username: 'newbie', password: 'a fine passphrase' });
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'there is no such endpoint' });
  });

  it('creates a user without scopes who can then log in', async () => {
    const res = await request(open.app).post('/register').send({ username: 'Newbie', password: 'a fine passphrase' });
    expect(res.status).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ sub: expect.stringMatching(/^[0-9a-f-]{36}$/), username: 'newbie' });
    const scopes = await database.db.selectFrom('user_scopes').select('scope').where('user_id', '=', res.body.sub).execute();
    expect(scopes).toEqual([]);
    expect(open.logs.entries('user_registered').filter((entry) => entry['user_id'] === res.body.sub)).toEqual([expect.objectContaining({ user_id: res.body.sub })]);
    expect(open.logs.lines.join('\n')).not.toContain('a fine passphrase');

    const client = await createTestClient(open);
    const login = await passwordGrant(open.app, client, { username: 'NEWBIE', password: 'a fine passphrase' });
    expect(login.status).toBe(200);
    expect(login.body).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String) });
  });

  it('applies the password policy and the username rules', async () => {
    const weak = await request(open.app).post('/register').type('form').send({ username: 'weakling', password: 'password1' });
    expect(weak.status).toBe(400);
    expect(weak.body).toEqual({ error: 'invalid_request', error_description: 'the password is too common; choose another' });
    const spaced = await request(open.app).post('/register').send({ username: 'two words', password: 'a fine passphrase' });
    expect(spaced.status).toBe(400);
    expect(spaced.body.error).toBe('invalid_request');
    expect(await database.db.selectFrom('users').select('id').where('username', 'in', ['weakling', 'two words']).execute()).toEqual([]);
  });

  it('a taken name (in any case or width) is a bare 409', async () => {
    const taken = await createTestUser(open, { username: 'taken' });
    for (const username of ['TAKEN', 'ｔａｋｅｎ', 'ＴＡＫＥＮ']) {
      const res = await request(open.app).post('/register').send({ username, password: 'another fine passphrase' });
      expect(res.status).toBe(409);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this username cannot be registered' });
    }
    expect(await database.db.selectFrom('users').select('id').where('username', '=', 'taken').execute()).toEqual([{ id: taken.id }]);
  });
});

describe('self-registration is rate-limited', () => {
  let limited: TestService;
  beforeAll(async () => {
    // Its own instance and Redis prefix, so no other test spends its budget.
    limited = await startTestService(database, {
      env: { ...env, REGISTRATION: 'open', LOGIN_IP_LIMIT: '2', TRUST_PROXY: 'loopback', RATE_LIMIT_PREFIX: `${env['RATE_LIMIT_PREFIX']}limited:` },
    });
  });
  afterAll(async () => {
    await limited?.close();
  });

  const register = (from: string, username: string, password = 'a fine passphrase') =>
    request(limited.app).post('/register').set('X-Forwarded-For', from).send({ username, password });

  it('is rate-limited per IP like logins', async () => {
    // LOGIN_IP_LIMIT is 2 for this instance: a success and a refusal both count.
    expect((await register('203.0.113.7', 'first-of-two')).status).toBe(201);
    expect((await register('203.0.113.7', 'weak-one', 'password1')).status).toBe(400);
    const res = await register('203.0.113.7', 'one-too-many');
    expect(res.status).toBe(429);
    expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
    expect(await database.db.selectFrom('users').select('id').where('username', '=', 'one-too-many').execute()).toEqual([]);
    // Another address has a budget of its own.
    expect((await register('203.0.113.8', 'from-elsewhere')).status).toBe(201);
  });
});
