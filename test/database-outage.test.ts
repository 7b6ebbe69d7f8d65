import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DatabaseProxy, useProxiedService } from './helpers/database-proxy.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  type TestClient,
  type TestService,
} from './helpers/service.js';
import { authorizeParams, createBrowserClient, exchangeCode, pkce, signInForCode } from './helpers/signin.js';

let proxy: DatabaseProxy;
let service: TestService;
let user: Awaited<ReturnType<typeof createTestUser>>;
let client: TestClient;

const proxied = useProxiedService();
beforeAll(async () => {
  [proxy, service] = [proxied.proxy(), proxied.service()];
  user = await createTestUser(service);
  client = await createTestClient(service);
});
// A test that fails mid-outage must not leave the next one without a database.
afterEach(() => proxy.restore());

const passwordLogin = () =>
  passwordGrant(service.app, client, user);

/** DESIGN.md: an infrastructure failure is never invalid_grant or invalid_client (clients discard tokens on those). */
function expectTemporarilyUnavailable(res: request.Response): void {
  expect(res.status).toBe(503);
  expect(res.body).toEqual({
    error: 'temporarily_unavailable',
    error_description: 'the service is temporarily unavailable; retry later',
  });
  expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['pragma']).toBe('no-cache');
  expect(res.headers['www-authenticate']).toBeUndefined();
}

async function expectNotReady(): Promise<void> {
  const res = await request(service.app).get('/readyz');
  expect(res.status).toBe(503);
  expect(res.body).toEqual({ status: 'not_ready', checks: { database: 'unavailable', keys: 'ok', rate_limits: 'redis', rate_limit_topology: 'single' } });
  expect(res.headers['cache-control']).toBe('no-store');
}

/** Nothing is restarted: the same pool serves again once the database answers. */
async function expectRecovered(): Promise<void> {
  const login = await passwordLogin();
  expect(login.status).toBe(200);
  expect(login.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
  const ready = await request(service.app).get('/readyz');
  expect(ready.status).toBe(200);
  expect(ready.body).toEqual({ status: 'ready', checks: { database: 'ok', keys: 'ok', rate_limits: 'redis', rate_limit_topology: 'single' } });
}

describe('database outage', () => {
  it('answers 503 temporarily_unavailable while the database refuses connections, and recovers when it is back', { timeout: 60_000 }, async () => {
    // Up: the pool holds live connections through the proxy.
    expect((await passwordLogin()).status).toBe(200);
    expect((await request(service.app).get('/readyz')).status).toBe(200);

    proxy.cut();

    // Several attempts: the first meets the pool's dead idle connections, the later ones fail to connect.
    for (let attempt = 0; attempt < 3; attempt++) expectTemporarilyUnavailable(await passwordLogin());
    await expectNotReady();

    // Liveness and the JWKS do not depend on the database: restarting the process would not help,
    // and resource servers keep verifying tokens offline.
    expect((await request(service.app).get('/healthz')).status).toBe(200);
    const jwks = await request(service.app).get('/.well-known/jwks.json');
    expect(jwks.status).toBe(200);
    expect(jwks.body.keys.map((key: { kid: string }) => key.kid)).toEqual([service.deps.keys.current().signing.kid]);

    proxy.restore();
    await expectRecovered();
  });

  it('answers 503 rather than hanging while the database does not answer at all, and recovers when it does', { timeout: 60_000 }, async () => {
    expect((await passwordLogin()).status).toBe(200);

    proxy.stall();

    // Two at once: one can meet a pooled connection that stopped answering, the other a new one that never opens.
    const logins = await Promise.all([passwordLogin(), passwordLogin()]);
    for (const res of logins) expectTemporarilyUnavailable(res);
    await expectNotReady();

    proxy.restore();
    await expectRecovered();
  });

  it('the browser sign-in answers 503 pages (never a redirect, never a 500), and /token 503 JSON for a code', { timeout: 60_000 }, async () => {
    const browserClient = await createBrowserClient(service);
    const agent = request.agent(service.app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(browserClient, challenge), user);

    proxy.cut();
    for (let attempt = 0; attempt < 3; attempt++) {
      const page = await agent.get('/authorize').query(authorizeParams(browserClient, pkce().challenge));
      expect(page.status).toBe(503);
      expect(page.headers['location']).toBeUndefined();
      expect(page.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect(page.text).toContain('<p class="error" role="alert">The service is temporarily unavailable; retry later.</p>');
    }
    expectTemporarilyUnavailable(await exchangeCode(service.app, browserClient, code, verifier));

    proxy.restore();
    // The code was not used up by the outage.
    expect((await exchangeCode(service.app, browserClient, code, verifier)).status).toBe(200);
  });

  it('logs the outage as a warning, with no password or client secret', async () => {
    // An outage of its own: only what this one logs counts.
    const before = service.logs.lines.length;
    proxy.cut();
    expectTemporarilyUnavailable(await passwordLogin());
    await expectNotReady();
    proxy.restore();
    await expectRecovered();

    const entries = service.logs.entries().slice(before);
    const warnings = entries.filter((entry) => entry['level'] === 'warn').map((entry) => entry['msg']);
    expect(warnings).toContain('infrastructure failure: answering 503');
    expect(warnings).toContain('readiness: database check failed');
    // The outage is an infrastructure problem, not a failed login or a bug.
    expect(entries.filter((entry) => entry['event'] === 'login_failed')).toEqual([]);
    expect(entries.filter((entry) => entry['msg'] === 'unexpected error')).toEqual([]);

    const text = service.logs.lines.join('\n');
    expect(text).not.toContain(user.password);
    expect(text).not.toContain(client.secret!);
    expect(text).not.toContain(client.basic.slice('Basic '.length));
  });
});
