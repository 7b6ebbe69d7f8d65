import { decodeJwt } from 'jose';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestClient, createTestUser, type TestClient, useTestService } from '../helpers/service.js';

// ATTACKS.md section H: asking for scopes one may not have, and scope strings built to slip past a
// lax parser. DESIGN.md, Scopes: the requested scope must lie within what both the user (roles plus
// direct scopes) and the client may have, else invalid_scope; the token carries the granted set.
// A wider scope on refresh is case B8, in section B's file.

const testService = useTestService();
const service = () => testService.current();

type User = Awaited<ReturnType<typeof createTestUser>>;

/** A gateway: password and refresh grants; its default includes a scope the user lacks. */
let gateway: TestClient;
/** A service client: client_credentials only. */
let machine: TestClient;
/** Direct scopes profile and admin, orders:read through a role; never orders:write. */
let user: User;

beforeAll(async () => {
  gateway = await createTestClient(service(), { scopes: ['profile', 'orders:read', 'orders:write'], defaultScopes: ['profile', 'orders:write'] });
  machine = await createTestClient(service(), {
    grantTypes: ['client_credentials'],
    scopes: ['orders:read', 'orders:write', 'inventory:read'],
    defaultScopes: ['orders:read'],
  });
  user = await createTestUser(service(), { scopes: ['profile', 'admin'], roles: { [`buyer-${Date.now()}`]: ['orders:read'] } });
});

const NOT_ALLOWED = { error: 'invalid_scope', error_description: 'the requested scope is not allowed for this user or client' };
const MALFORMED = { error: 'invalid_scope', error_description: 'the scope parameter is malformed' };

const withScope = (scope: string | undefined): Record<string, string> => (scope === undefined ? {} : { scope });
const tokenRequest = (client: TestClient, body: Record<string, string>) =>
  request(service().app).post('/token').type('form').set('Authorization', client.basic).send(body);
const passwordGrant = (scope?: string, client = gateway, who = user) =>
  tokenRequest(client, { grant_type: 'password', username: who.username, password: who.password, ...withScope(scope) });
const clientGrant = (scope?: string) => tokenRequest(machine, { grant_type: 'client_credentials', ...withScope(scope) });
const refreshGrant = (refreshToken: string, scope?: string) =>
  tokenRequest(gateway, { grant_type: 'refresh_token', refresh_token: refreshToken, ...withScope(scope) });

/**
 * Everything a grant leaves behind in this file's service: refresh families (with their generation
 * and revocation) and the audit events of logins, client tokens and refreshes.
 */
async function issued() {
  const families = await service().deps.db.selectFrom('refresh_families').select(['id', 'scope', 'generation', 'revoked_at']).orderBy('id').execute();
  const events = ['login_succeeded', 'client_token_issued', 'token_refreshed'].map((event) => [event, service().logs.entries(event).length]);
  return { families, events };
}

/** Sends a request that must be refused as `expected`, and checks that it issued, consumed and revoked nothing. */
async function expectRefused(send: () => PromiseLike<request.Response>, expected: object): Promise<void> {
  const before = await issued();
  const res = await send();
  expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: expected });
  expect(res.headers['cache-control']).toBe('no-store');
  expect(await issued()).toEqual(before);
}

/** The refresh token of a fresh login by `user` through the gateway. */
async function refreshToken(): Promise<string> {
  const res = await passwordGrant('profile');
  expect(res.status).toBe(200);
  return res.body.refresh_token as string;
}

describe('H1 scopes beyond what the user and the client may have', () => {
  it.each([
    ['a scope the user may not have (the client may)', 'orders:write'],
    ['a scope the client may not grant (the user has it)', 'admin'],
    ['a scope neither knows', 'payments:refund'],
    ['one scope too many beside allowed ones: refused, not silently narrowed', 'profile orders:read orders:write'],
  ])('H1 %s is invalid_scope at the password grant, and no token is issued', async (_name, scope) => {
    await expectRefused(() => passwordGrant(scope), NOT_ALLOWED);
  });

  it.each(['admin', 'orders:read admin', 'profile', 'Orders:read'])(
    "H1 %j outside the client's allowed set is invalid_scope at client_credentials, and no token is issued",
    async (scope) => {
      await expectRefused(() => clientGrant(scope), NOT_ALLOWED);
    },
  );

  it.each([
    ['role and direct scopes together', 'profile orders:read', 'orders:read profile'],
    ['a subset: only what was asked, not all the user may have', 'orders:read', 'orders:read'],
    ['a scope named twice', 'profile profile', 'profile'],
    ["no scope: the client's default, narrowed to what the user may have", undefined, 'profile'],
  ])("H1 %s: the token's scope is exactly the granted set, in the response, the JWT and the session", async (_name, requested, granted) => {
    const res = await passwordGrant(requested);
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe(granted);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims.scope).toBe(granted);
    const family = await service().deps.db.selectFrom('refresh_families').select('scope').where('id', '=', claims.sid as string).executeTakeFirstOrThrow();
    // The session keeps that set, no more: later refreshes draw on it (B8).
    expect([...family.scope].sort().join(' ')).toBe(granted);
  });

  it("H1 client_credentials: the token's scope is exactly the granted set", async () => {
    for (const [requested, granted] of [
      ['inventory:read orders:write', 'inventory:read orders:write'],
      [undefined, 'orders:read'],
    ] as const) {
      const res = await clientGrant(requested);
      expect([res.status, res.body.scope, decodeJwt(res.body.access_token as string).scope]).toEqual([200, granted, granted]);
    }
  });
});

describe('H2 malformed scope strings and case', () => {
  // RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
  it.each([
    ['a double space', 'profile  orders:read'],
    ['a leading space', ' profile'],
    ['a trailing space', 'profile '],
    ['a space alone', ' '],
    ['a tab', 'profile\torders:read'],
    ['a newline', 'profile\norders:read'],
    ['a no-break space', 'profile\u00a0orders:read'],
    ['a NUL', 'profile\0'],
    ['a double quote', 'pro"file'],
    ['a backslash', 'pro\\file'],
    ['non-ASCII', 'prófile'],
    ['full-width letters (NFKC would make them profile)', 'ｐｒｏｆｉｌｅ'],
  ])('H2 %s in the scope is invalid_scope at every grant, and nothing is issued or consumed', async (_name, scope) => {
    const token = await refreshToken();
    await expectRefused(() => passwordGrant(scope), MALFORMED);
    await expectRefused(() => clientGrant(scope), MALFORMED);
    await expectRefused(() => refreshGrant(token, scope), MALFORMED);
  });

  it('H2 an empty scope parameter is treated as omitted (RFC 6749 §3.2), so the default applies', async () => {
    // §3.2: "Parameters sent without a value MUST be treated as if they were omitted from the
    // request." An empty scope is therefore not malformed: the client's default (narrowed) is granted.
    const res = await passwordGrant('');
    expect([res.status, res.body.scope]).toEqual([200, 'profile']);
  });

  it('H2 scopes are case-sensitive: Profile and profile are two scopes', async () => {
    // The client may grant both; the user has only Profile.
    const client = await createTestClient(service(), { scopes: ['profile', 'Profile'] });
    const who = await createTestUser(service(), { scopes: ['Profile'] });
    for (const scope of ['profile', 'PROFILE', 'Profile profile']) await expectRefused(() => passwordGrant(scope, client, who), NOT_ALLOWED);
    await expectRefused(() => passwordGrant('Profile', client, user), NOT_ALLOWED); // this user has profile, not Profile
    const granted = await passwordGrant('Profile', client, who);
    expect([granted.status, granted.body.scope, decodeJwt(granted.body.access_token as string).scope]).toEqual([200, 'Profile', 'Profile']);
  });
});
