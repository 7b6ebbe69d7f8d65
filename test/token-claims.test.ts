import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { addUserRole, insertRole } from '../src/db/roles.js';
import { runCliOn } from './helpers/cli.js';
import type { TestDatabase } from './helpers/database.js';
import {
  type AdminService,
  createTestClient,
  createTestUser,
  passwordGrant,
  startAdminService,
  type TestClient,
  type TestService,
  uniqueName,
} from './helpers/service.js';

// Issue 21 item 2: per client, the user's roles (RFC 9068 §2.2.3.1) and claims mapped from user
// attributes in access tokens; registered claims never mapped; a refresh reads them again.

let database: TestDatabase;
let service: TestService;
let env: Env;
let adminToken: string;
let started: AdminService | undefined;

beforeAll(async () => {
  started = await startAdminService();
  ({ database, service, env, adminToken } = started);
});
afterAll(() => started?.close());

const asAdmin = (test: request.Test) => test.set('Authorization', `Bearer ${adminToken}`);
const patchClient = (id: string, body: object) => asAdmin(request(service.app).patch(`/admin/clients/${id}`)).send(body);
const patchUser = (id: string, body: object) => asAdmin(request(service.app).patch(`/admin/users/${id}`)).send(body);
const cli = (argv: readonly string[]) => runCliOn(env, argv, { clock: service.clock });
const invalid = (description: string) => ({ error: 'invalid_request', error_description: description });

async function clientRow(id: string) {
  return database.db.selectFrom('clients').select(['roles_claim', 'token_claims', 'name']).where('id', '=', id).executeTakeFirstOrThrow();
}

async function login(client: TestClient, user: { username: string; password: string }) {
  const res = await passwordGrant(service.app, client, user);
  expect(res.status).toBe(200);
  return { claims: decodeJwt(res.body.access_token as string), token: res.body.access_token as string, refresh: res.body.refresh_token as string };
}

async function refresh(client: TestClient, refreshToken: string) {
  const res = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: refreshToken });
  expect(res.status).toBe(200);
  return { claims: decodeJwt(res.body.access_token as string), refresh: res.body.refresh_token as string };
}

async function userWithRoles(roles: string[], attributes: Record<string, unknown>) {
  const user = await createTestUser(service);
  for (const role of roles) {
    await insertRole(service.deps.db, role, '').catch(() => undefined);
    await addUserRole(service.deps.db, user.id, role);
  }
  expect((await patchUser(user.id, { attributes })).status).toBe(200);
  return user;
}

describe('PATCH /admin/clients/{id}', () => {
  it('sets roles_claim and token_claims, shows them, and tokens carry them', async () => {
    const client = await createTestClient(service);
    const res = await patchClient(client.id, { roles_claim: true, token_claims: { tenant: 'attributes.tenant', org_id: 'attributes.org.id', 'https://example.com/team': 'attributes.team' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ roles_claim: true, token_claims: { tenant: 'attributes.tenant', org_id: 'attributes.org.id', 'https://example.com/team': 'attributes.team' } });

    const user = await userWithRoles([uniqueName('editor'), uniqueName('auditor')], { tenant: 'acme', org: { id: 42 }, secret_note: 'not mapped' });
    const { claims } = await login(client, user);
    expect(claims['tenant']).toBe('acme');
    expect(claims['org_id']).toBe(42);
    expect(claims['roles']).toEqual(((await asAdmin(request(service.app).get(`/admin/users/${user.id}`))).body as { roles: string[] }).roles);
    expect((claims['roles'] as string[]).length).toBe(2);
    // Not mapped: not there. Missing attribute: no claim, not null.
    expect(claims).not.toHaveProperty('secret_note');
    expect(claims).not.toHaveProperty('https://example.com/team');
  });

  it('gives nothing extra to a client that maps nothing', async () => {
    const client = await createTestClient(service);
    const user = await userWithRoles([uniqueName('plain')], { tenant: 'acme' });
    const { claims } = await login(client, user);
    expect(Object.keys(claims).sort()).toEqual(['aud', 'auth_time', 'client_id', 'exp', 'iat', 'iss', 'jti', 'scope', 'sid', 'sub']);
  });

  it('refuses a registered or protocol claim name, leaving the client as it was', async () => {
    const client = await createTestClient(service);
    for (const name of ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'scope', 'client_id', 'auth_time', 'sid', 'typ', 'roles', 'cnf', 'act', 'may_act', 'email', 'email_verified']) {
      const res = await patchClient(client.id, { token_claims: { [name]: 'attributes.tenant' }, name: 'changed' });
      expect(res.status, name).toBe(400);
      expect(res.body, name).toEqual(invalid(`the claim ${name} is a registered or protocol claim and cannot be mapped`));
    }
    // In any case: JWT claim names are case-sensitive (RFC 7519 §4), but common verifiers are not (Go's
    // encoding/json matches `Roles` to a field tagged `roles`, and the later member wins).
    for (const name of ['Roles', 'ISS', 'Sub', 'EXP', 'Scope', 'Client_ID', 'EMAIL']) {
      const res = await patchClient(client.id, { token_claims: { [name]: 'attributes.tenant' }, name: 'changed' });
      expect(res.status, name).toBe(400);
      expect(res.body, name).toEqual(invalid(`the claim ${name} is a registered or protocol claim and cannot be mapped`));
    }
    expect(await clientRow(client.id)).toEqual({ roles_claim: false, token_claims: {}, name: client.name });
  });

  it('refuses a path that is not attributes.<name>[.<name>], and other malformed maps', async () => {
    const client = await createTestClient(service);
    const path = (name: string) => `the claim ${name} must map to attributes.<name> or attributes.<name>.<name>`;
    const cases: [unknown, string][] = [
      [{ tenant: 'tenant' }, path('tenant')],
      [{ tenant: 'attributes' }, path('tenant')],
      [{ tenant: 'attributes.' }, path('tenant')],
      [{ tenant: 'attributes.a.b.c' }, path('tenant')],
      [{ tenant: 'user.attributes.tenant' }, path('tenant')],
      [{ tenant: 'attributes.__proto__ x' }, path('tenant')],
      [{ tenant: 42 }, path('tenant')],
      [{ '9lives': 'attributes.a' }, 'a claim name has 1 to 64 letters, digits or _ . : / - and starts with a letter'],
      [{ a: 'attributes.org', b: 'attributes.org.id' }, 'token_claims maps attributes.org more than once (or a part of it)'],
      [{ a: 'attributes.org', b: 'attributes.org' }, 'token_claims maps attributes.org more than once (or a part of it)'],
      [Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`c${i}`, `attributes.a${i}`])), 'token_claims maps at most 20 claims'],
    ];
    for (const [tokenClaims, description] of cases) {
      const res = await patchClient(client.id, { token_claims: tokenClaims, roles_claim: true });
      expect(res.status, description).toBe(400);
      expect(res.body, description).toEqual(invalid(description));
    }
    const notObject = await patchClient(client.id, { token_claims: ['tenant'] });
    expect(notObject.body).toEqual(invalid('the field token_claims must be a JSON object'));
    expect(await clientRow(client.id)).toEqual({ roles_claim: false, token_claims: {}, name: client.name });
  });

  it('creates a client with claims (POST /admin/clients)', async () => {
    const id = uniqueName('claims-client');
    const res = await asAdmin(request(service.app).post('/admin/clients')).send({ id, roles_claim: true, token_claims: { tenant: 'attributes.tenant' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id, roles_claim: true, token_claims: { tenant: 'attributes.tenant' } });
    const bad = await asAdmin(request(service.app).post('/admin/clients')).send({ id: uniqueName('c'), token_claims: { sub: 'attributes.tenant' } });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual(invalid('the claim sub is a registered or protocol claim and cannot be mapped'));
  });
});

describe('refresh', () => {
  it('carries the roles and attributes as they are now, not as at login', async () => {
    const client = await createTestClient(service);
    await patchClient(client.id, { roles_claim: true, token_claims: { tenant: 'attributes.tenant' } });
    const first = uniqueName('first');
    const second = uniqueName('second');
    const user = await userWithRoles([first], { tenant: 'acme' });
    const login1 = await login(client, user);
    expect(login1.claims).toMatchObject({ roles: [first], tenant: 'acme' });

    expect((await patchUser(user.id, { attributes: { tenant: 'globex' } })).status).toBe(200);
    await insertRole(service.deps.db, second, '');
    expect((await patchUser(user.id, { roles: [second] })).status).toBe(200);
    const refreshed = await refresh(client, login1.refresh);
    expect(refreshed.claims).toMatchObject({ roles: [second], tenant: 'globex' });

    // The attribute gone: the claim is gone too.
    expect((await patchUser(user.id, { attributes: {} })).status).toBe(200);
    const again = await refresh(client, refreshed.refresh);
    expect(again.claims).not.toHaveProperty('tenant');
    expect(again.claims['roles']).toEqual([second]);

    // The client stops asking: the next refresh carries neither.
    await patchClient(client.id, { roles_claim: false, token_claims: {} });
    const plain = await refresh(client, again.refresh);
    expect(plain.claims).not.toHaveProperty('roles');
  });
});

describe('client_credentials', () => {
  it('gets no user claims, whatever the client maps', async () => {
    const client = await createTestClient(service, { grantTypes: ['client_credentials'], scopes: ['orders:read'] });
    await patchClient(client.id, { roles_claim: true, token_claims: { tenant: 'attributes.tenant' } });
    const res = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(200);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims).not.toHaveProperty('roles');
    expect(claims).not.toHaveProperty('tenant');
    expect(claims.sub).toBe(client.id);
  });
});

describe('size', () => {
  it('keeps a token with the largest attributes and many roles under 8 KiB, leaving out what passes the 4 KiB budget', async () => {
    const client = await createTestClient(service);
    const claims = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`claim_${String(i).padStart(2, '0')}_${'n'.repeat(50)}`, `attributes.a${i}`]));
    expect((await patchClient(client.id, { roles_claim: true, token_claims: claims })).status).toBe(200);
    // 20 attributes filling the 4 KiB, and 40 roles of 60 characters (2.5 KiB of roles).
    const attributes = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`a${i}`, 'v'.repeat(190)]));
    const roles = Array.from({ length: 40 }, (_, i) => `${uniqueName('r')}-${'x'.repeat(50)}`.slice(0, 60) + i);
    const user = await userWithRoles(roles.map((role) => role.slice(0, 64)), attributes);
    const { claims: payload, token } = await login(client, user);
    expect(token.length).toBeLessThan(8192);
    expect(payload['roles']).toHaveLength(40);
    const mapped = Object.keys(payload).filter((name) => name.startsWith('claim_'));
    // roles (~2.6 KiB) first, then mapped claims in name order until 4096 bytes: the rest left out, and said so.
    expect(mapped.length).toBeGreaterThan(0);
    expect(mapped.length).toBeLessThan(20);
    expect(mapped).toEqual(Object.keys(claims).sort().slice(0, mapped.length));
    expect(service.logs.entries().some((line) => line['msg'] === 'claims left out of an access token: together they pass 4 KiB' && line['client_id'] === client.id)).toBe(true);
    // Introspection and /userinfo still accept it.
    expect((await request(service.app).get('/userinfo').set('Authorization', `Bearer ${token}`)).status).toBe(200);
  });
});

describe('tessera clients create and update', () => {
  it('sets, changes and removes claims', async () => {
    const id = uniqueName('cli-claims');
    const created = await cli(['clients', 'create', '--id', id, '--roles-claim', '--claim', 'tenant=attributes.tenant', '--json']);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ client_id: id, roles_claim: true, token_claims: { tenant: 'attributes.tenant' } });
    const updated = await cli(['clients', 'update', id, '--roles-claim', 'off', '--claim', 'org=attributes.org.id', '--remove-claim', 'tenant']);
    expect(updated).toMatchObject({ code: 0, stdout: `client_id: ${id}\nrate_limit: off\nroles_claim: false\ntoken_claims: org=attributes.org.id\n` });
    expect(await clientRow(id)).toMatchObject({ roles_claim: false, token_claims: { org: 'attributes.org.id' } });
  });

  it('refuses a reserved claim or a bad path (a usage error, exit 2), changing nothing', async () => {
    const id = uniqueName('cli-claims');
    const reserved = await cli(['clients', 'create', '--id', id, '--claim', 'sub=attributes.tenant']);
    expect(reserved).toEqual({ code: 2, stdout: '', stderr: 'error: the claim sub is a registered or protocol claim and cannot be mapped\n(see tessera clients create --help)\n' });
    expect(await database.db.selectFrom('clients').select('id').where('id', '=', id).executeTakeFirst()).toBeUndefined();
    const malformed = await cli(['clients', 'create', '--id', id, '--claim', 'tenant']);
    expect(malformed.stderr).toBe('error: --claim takes NAME=PATH, such as tenant=attributes.tenant\n(see tessera clients create --help)\n');

    const client = await createTestClient(service);
    const bad = await cli(['clients', 'update', client.id, '--claim', 'tenant=tenant', '--roles-claim', 'on']);
    expect(bad).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: the claim tenant must map to attributes.<name> or attributes.<name>.<name>\n(see tessera clients update --help)\n',
    });
    expect(await clientRow(client.id)).toMatchObject({ roles_claim: false, token_claims: {} });
    const nothing = await cli(['clients', 'update', client.id]);
    expect(nothing.stderr).toBe('error: nothing to change: give --rate-limit, --roles-claim, --claim, --remove-claim, --redirect-uri or --post-logout-redirect-uri\n(see tessera clients update --help)\n');
  });
});
