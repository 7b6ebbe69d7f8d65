import { describe, expect, it } from 'vitest';
import { checkTokenClaims, MAX_CUSTOM_CLAIMS_BYTES, userClaims } from './token-claims.js';

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
});
