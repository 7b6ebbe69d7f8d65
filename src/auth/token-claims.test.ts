import { describe, expect, it } from 'vitest';
import { checkTokenClaims, MAX_CUSTOM_CLAIMS_BYTES, userClaims, wantsUserClaims } from './token-claims.js';

describe('checkTokenClaims', () => {
  it('takes names to attributes.<name>[.<name>] paths', () => {
    expect(checkTokenClaims({ tenant: 'attributes.tenant', 'https://example.com/org': 'attributes.org.id' })).toEqual({
      tenant: 'attributes.tenant',
      'https://example.com/org': 'attributes.org.id',
    });
  });

  it('refuses a reserved name however the map is built', () => {
    expect(() => checkTokenClaims(JSON.parse('{"sub":"attributes.a"}'))).toThrow('the claim sub is a registered or protocol claim and cannot be mapped');
    expect(() => checkTokenClaims(JSON.parse('{"__proto__":"attributes.a"}'))).toThrow('a claim name has 1 to 64 letters');
  });

  // Written out, not read from RESERVED_CLAIMS: a name dropped from the set must fail here.
  it.each([
    'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti',
    'client_id', 'scope', 'scp', 'auth_time', 'acr', 'amr', 'sid',
    'roles', 'groups', 'entitlements',
    'act', 'may_act', 'cnf', 'azp', 'nonce', 'at_hash', 'c_hash', 's_hash', 'typ',
    'email', 'email_verified', 'name', 'preferred_username', 'username', 'updated_at',
    'Groups', 'NONCE',
  ])('refuses the reserved claim %s', (name) => {
    expect(() => checkTokenClaims({ [name]: 'attributes.a' })).toThrow(`the claim ${name} is a registered or protocol claim and cannot be mapped`);
  });

  const badName = 'a claim name has 1 to 64 letters, digits or _ . : / - and starts with a letter';
  const badPath = (name: string) => `the claim ${name} must map to attributes.<name> or attributes.<name>.<name>`;

  it('takes claim names of 1 to 64 characters, letters first, then letters, digits and _ . : / -', () => {
    const map = { a: 'attributes.a', [`b${'x'.repeat(63)}`]: 'attributes.b', 'Z9_.:/-z': 'attributes.c' };
    expect(checkTokenClaims(map)).toEqual(map);
  });

  it.each(['', `b${'x'.repeat(64)}`, '9lives', '_a', 'tenant!', 'ten ant', 'tenant\n'])('refuses the claim name %j', (name) => {
    expect(() => checkTokenClaims({ [name]: 'attributes.a' })).toThrow(badName);
  });

  it('takes attribute names of 1 to 64 characters, one or two levels deep', () => {
    const map = { a: `attributes.${'x'.repeat(64)}`, b: `attributes.y.${'z'.repeat(64)}`, c: 'attributes.A-z_9.B-0_' };
    expect(checkTokenClaims(map)).toEqual(map);
  });

  it.each([`attributes.${'x'.repeat(65)}`, `attributes.y.${'z'.repeat(65)}`, 'xattributes.a', 'attributes.a.b.c', 'attributes.a.', 'attributes..a', 'attributes.a b', 'attributes.a!'])(
    'refuses the path %j',
    (path) => {
      expect(() => checkTokenClaims({ tenant: path })).toThrow(badPath('tenant'));
    },
  );

  it('refuses a path that is not a string', () => {
    for (const path of [42, null, ['attributes.a'], { path: 'attributes.a' }]) {
      expect(() => checkTokenClaims({ tenant: path })).toThrow(badPath('tenant'));
    }
  });

  it('refuses anything but a plain object', () => {
    for (const input of [null, undefined, 'attributes.a', 42, [['a', 'attributes.a']]]) {
      expect(() => checkTokenClaims(input)).toThrow('token_claims must be a JSON object of claim names to attribute paths');
    }
  });

  it('takes 20 claims, or none, and refuses 21', () => {
    const map = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`c${i}`, `attributes.a${i}`]));
    expect(checkTokenClaims(map(20))).toEqual(map(20));
    expect(checkTokenClaims({})).toEqual({});
    expect(() => checkTokenClaims(map(21))).toThrow('token_claims maps at most 20 claims');
  });

  it('refuses a path mapped twice or inside another, in either order, but takes paths that only share a prefix', () => {
    const twice = 'token_claims maps attributes.org more than once (or a part of it)';
    expect(() => checkTokenClaims({ a: 'attributes.org', b: 'attributes.org' })).toThrow(twice);
    expect(() => checkTokenClaims({ a: 'attributes.org', b: 'attributes.org.id' })).toThrow(twice);
    expect(() => checkTokenClaims({ a: 'attributes.org.id', b: 'attributes.org' })).toThrow(twice);
    const map = { a: 'attributes.org', b: 'attributes.organisation', c: 'attributes.orgs.id', d: 'attributes.x.org' };
    expect(checkTokenClaims(map)).toEqual(map);
  });
});

describe('wantsUserClaims', () => {
  it('is true for roles, or for any mapped claim, and only then', () => {
    expect(wantsUserClaims({ roles_claim: true, token_claims: {} })).toBe(true);
    expect(wantsUserClaims({ roles_claim: false, token_claims: { a: 'attributes.a' } })).toBe(true);
    expect(wantsUserClaims({ roles_claim: false, token_claims: {} })).toBe(false);
  });
});

describe('userClaims', () => {
  const source = { roles: ['admin', 'editor'], attributes: { tenant: 'acme', org: { id: 7 }, list: [1, 2] } };

  it('reads roles and own attribute members only', () => {
    const client = { roles_claim: true, token_claims: { tenant: 'attributes.tenant', org: 'attributes.org.id', ctor: 'attributes.constructor', deep: 'attributes.list.length' } };
    expect(userClaims(client, source)).toEqual({ claims: { roles: ['admin', 'editor'], tenant: 'acme', org: 7 }, omitted: [] });
  });

  it('leaves out, in name order, the claims past the budget', () => {
    const big = 'x'.repeat(MAX_CUSTOM_CLAIMS_BYTES / 2);
    const client = { roles_claim: false, token_claims: { b: 'attributes.b', a: 'attributes.a', c: 'attributes.c' } };
    const { claims, omitted } = userClaims(client, { roles: [], attributes: { a: big, b: big, c: 'small' } });
    expect(Object.keys(claims)).toEqual(['a', 'c']);
    expect(omitted).toEqual(['b']);
  });

  it('spends exactly the budget, `"name":value,` per claim, roles first', () => {
    // `"a":"x…x",` is the value's length plus 7 bytes.
    const exact = 'x'.repeat(MAX_CUSTOM_CLAIMS_BYTES - 7);
    const mapsA = { roles_claim: false, token_claims: { a: 'attributes.a' } };
    expect(userClaims(mapsA, { roles: [], attributes: { a: exact } })).toEqual({ claims: { a: exact }, omitted: [] });
    expect(userClaims(mapsA, { roles: [], attributes: { a: `${exact}x` } })).toEqual({ claims: {}, omitted: ['a'] });
    // Multi-byte characters count in UTF-8 bytes: 'é' is 2.
    expect(userClaims(mapsA, { roles: [], attributes: { a: `${exact.slice(1)}é` } })).toEqual({ claims: {}, omitted: ['a'] });
    // `"roles":[],` is 11 bytes: after it, what took the whole budget no longer fits.
    expect(userClaims({ ...mapsA, roles_claim: true }, { roles: [], attributes: { a: exact } })).toEqual({ claims: { roles: [] }, omitted: ['a'] });
    const lessRoles = 'x'.repeat(MAX_CUSTOM_CLAIMS_BYTES - 7 - 11);
    expect(userClaims({ ...mapsA, roles_claim: true }, { roles: [], attributes: { a: lessRoles } })).toEqual({ claims: { roles: [], a: lessRoles }, omitted: [] });
  });

  it('gives no claim for an attribute the user lacks, but gives null, false and 0 as they are', () => {
    const client = { roles_claim: false, token_claims: { a: 'attributes.a', b: 'attributes.b', c: 'attributes.c', d: 'attributes.d', e: 'attributes.e.f', g: 'attributes.g.h' } };
    expect(userClaims(client, { roles: ['admin'], attributes: { a: null, b: false, c: 0, e: 'not an object', g: { i: 1 } } })).toStrictEqual({
      claims: { a: null, b: false, c: 0 },
      omitted: [],
    });
  });

  it('gives roles as a copy of the list, and no roles claim unless asked', () => {
    const roles = ['admin'];
    const { claims } = userClaims({ roles_claim: true, token_claims: {} }, { roles, attributes: {} });
    expect(claims).toEqual({ roles: ['admin'] });
    expect(claims['roles']).not.toBe(roles);
    expect(userClaims({ roles_claim: false, token_claims: {} }, { roles, attributes: {} })).toEqual({ claims: {}, omitted: [] });
  });
});
