import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { startTestService, testEnv, type TestService } from './helpers/service.js';

let database: TestDatabase;
let open: TestService;
let closed: TestService;
const APP = 'https://app.example.com';

beforeAll(async () => {
  database = await createTestDatabase();
  const env = testEnv(database);
  open = await startTestService(database, { env: { ...env, CORS_ORIGINS: `${APP}, https://admin.example.com`, REGISTRATION: 'open', LOGIN_IP_LIMIT: '4' } });
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
    expect(open.logs.entries('user_registered')).toEqual([expect.objectContaining({ user_id: res.body.sub })]);
    expect(open.logs.lines.join('\n')).not.toContain('a fine passphrase');
  });

  it('applies the password policy and the username rules', async () => {
    const weak = await request(open.app).post('/register').type('form').send({ username: 'weakling', password: 'password1' });
    expect(weak.status).toBe(400);
    expect(weak.body).toEqual({ error: 'invalid_request', error_description: 'the password is too common; choose another' });
    const spaced = await request(open.app).post('/register').send({ username: 'two words', password: 'a fine passphrase' });
    expect(spaced.status).toBe(400);
    expect(spaced.body.error).toBe('invalid_request');
  });

  it('a taken name (in any case or width) is a bare 409', async () => {
    const res = await request(open.app).post('/register').send({ username: 'ＮＥＷＢＩＥ', password: 'another fine passphrase' });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: 'this username cannot be registered' });
  });

  it('is rate-limited per IP like logins', async () => {
    // LOGIN_IP_LIMIT is 4 for this instance; four requests above already counted.
    const res = await request(open.app).post('/register').send({ username: 'one-too-many', password: 'a fine passphrase' });
    expect(res.status).toBe(429);
    expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
    expect(await database.db.selectFrom('users').select('id').where('username', '=', 'one-too-many').execute()).toEqual([]);
  });
});
