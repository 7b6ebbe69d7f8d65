import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DatabaseProxy, useProxiedService } from './helpers/database-proxy.js';
import { createTestClient, createTestUser, passwordGrant, type TestClient, type TestService, uniqueName } from './helpers/service.js';

// Who may use the admin API (src/http/admin/auth.ts) and what an admin's change may not take away
// (src/auth/admin-access.ts), on one route or two: that every route is behind requireAdmin is
// test/admin.test.ts's matrix; the self-lockout paths are ATTACKS.md I7, test/security/i-integrity.test.ts.

let proxy: DatabaseProxy;
let service: TestService;

const proxied = useProxiedService();
beforeAll(() => {
  [proxy, service] = [proxied.proxy(), proxied.service()];
});
// A test that fails mid-outage must not leave the next one without a database.
afterEach(() => proxy.restore());

interface Admin {
  readonly id: string;
  readonly client: TestClient;
  readonly token: string;
}

/** A user holding `scopes` directly, logged in with `scope` through a client of their own that may issue admin. */
async function signIn(scopes: string[], scope: string): Promise<Admin> {
  const user = await createTestUser(service, { scopes });
  const client = await createTestClient(service, { scopes: ['admin', 'profile'], defaultScopes: ['profile'] });
  const login = await passwordGrant(service.app, client, user, { scope });
  expect(login.status).toBe(200);
  return { id: user.id, client, token: login.body.access_token as string };
}

const admin = (method: 'get' | 'post' | 'patch', path: string, token: string | null, body?: object) => {
  const req = request(service.app)[method](path);
  if (token !== null) req.set('Authorization', `Bearer ${token}`);
  return body === undefined ? req : req.send(body);
};
const createRole = (token: string | null) => admin('post', '/admin/roles', token, { name: uniqueName('role-') });

const deniedSoFar = () => service.logs.entries('admin_access_denied').length;
const ADMIN_CHALLENGE = 'Bearer realm="tessera", error="insufficient_scope", scope="admin"';
const INSUFFICIENT = { error: 'insufficient_scope', error_description: 'this endpoint needs an access token with the admin scope' };

/** The whole refusal, and the audit event that says who was refused where (a probe shows up where alerts look). */
async function expectDenied(send: () => Promise<request.Response>, status: number, body: object, challenge: string): Promise<void> {
  const before = deniedSoFar();
  const res = await send();
  expect({ status: res.status, body: res.body, challenge: res.headers['www-authenticate'] }).toEqual({ status, body, challenge });
  expect(service.logs.entries('admin_access_denied').slice(before)).toEqual([
    expect.objectContaining({ reason: (body as { error: string }).error, path: '/admin/roles', ip: '127.0.0.1' }),
  ]);
}

describe('requireAdmin', () => {
  it('lets in a user whose token carries admin and who holds it; their changes are audited under their id and address', async () => {
    const { id, token } = await signIn(['admin'], 'admin');
    const before = deniedSoFar();
    const res = await createRole(token);
    expect(res.status).toBe(201);
    const audited = service.logs.entries('role_changed').filter((entry) => entry['role'] === res.body.name);
    expect(audited).toEqual([expect.objectContaining({ actor: id, ip: '127.0.0.1', created: true })]);
    expect(deniedSoFar()).toBe(before);
  });

  it('refuses a request without a token: 401 with a bare challenge, logged', async () => {
    await expectDenied(() => createRole(null), 401, { error: 'invalid_token', error_description: 'a bearer access token is required' }, 'Bearer realm="tessera"');
  });

  it('refuses a token issued without admin, though its user holds admin: 403 naming the scope, logged', async () => {
    const { token } = await signIn(['admin', 'profile'], 'profile');
    await expectDenied(() => createRole(token), 403, INSUFFICIENT, ADMIN_CHALLENGE);
    await expectDenied(() => admin('get', '/admin/roles', token), 403, INSUFFICIENT, ADMIN_CHALLENGE);
  });

  it('refuses a token issued with admin once its user no longer holds it: 403, at once', async () => {
    const operator = await signIn(['admin'], 'admin');
    const former = await signIn(['admin', 'profile'], 'admin profile');
    expect((await admin('get', '/admin/roles', former.token)).status).toBe(200);
    expect((await admin('patch', `/admin/users/${former.id}`, operator.token, { scopes: ['profile'] })).status).toBe(200);
    await expectDenied(() => admin('get', '/admin/roles', former.token), 403, INSUFFICIENT, ADMIN_CHALLENGE);
  });

  it('answers a database outage while it checks the caller with 503, and does not log it as a denial', async () => {
    const { token } = await signIn(['admin'], 'admin');
    const before = deniedSoFar();
    proxy.cut();
    const res = await admin('get', '/admin/roles', token);
    proxy.restore();
    expect({ status: res.status, body: res.body }).toEqual({
      status: 503,
      body: { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; retry later' },
    });
    expect(deniedSoFar()).toBe(before);
    expect((await admin('get', '/admin/roles', token)).status).toBe(200);
  });
});

describe('keepAdminAccess', () => {
  it('refuses (409) a change that takes admin from the caller\'s own account, or from the client of their token', async () => {
    const caller = await signIn(['admin'], 'admin');
    const self = await admin('patch', `/admin/users/${caller.id}`, caller.token, { scopes: [] });
    expect({ status: self.status, body: self.body }).toEqual({
      status: 409,
      body: { error: 'invalid_request', error_description: 'an admin cannot take the admin scope from their own account' },
    });
    const client = await admin('patch', `/admin/clients/${caller.client.id}`, caller.token, { scopes: ['profile'], default_scopes: ['profile'] });
    expect({ status: client.status, body: client.body }).toEqual({
      status: 409,
      body: { error: 'invalid_request', error_description: 'an admin cannot take the admin scope or its grants from the client of their own token' },
    });
    expect((await admin('get', `/admin/clients/${caller.client.id}`, caller.token)).body.scopes).toEqual(['admin', 'profile']);
    expect((await createRole(caller.token)).status).toBe(201);
  });

  it('lets an admin whose client another admin has stopped issuing admin still make changes that leave it so', async () => {
    const stranded = await signIn(['admin'], 'admin');
    const other = await signIn(['admin'], 'admin');
    const narrowed = await admin('patch', `/admin/clients/${stranded.client.id}`, other.token, { scopes: ['profile'], default_scopes: ['profile'] });
    expect(narrowed.status).toBe(200);
    // The client part of the check held before this change did not: it is not this change's to keep.
    expect((await createRole(stranded.token)).status).toBe(201);
  });

  it('lets an admin leave the client of their token either user grant alone: each still gives them admin tokens', async () => {
    for (const grant of ['password', 'refresh_token']) {
      const { client, token } = await signIn(['admin'], 'admin');
      const res = await admin('patch', `/admin/clients/${client.id}`, token, { grant_types: [grant] });
      expect({ status: res.status, grants: res.body.grant_types }).toEqual({ status: 200, grants: [grant] });
      expect((await createRole(token)).status).toBe(201);
    }
  });
});
