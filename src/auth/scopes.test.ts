import { describe, expect, it } from 'vitest';
import { expectOAuthError } from '../../test/helpers/oauth-error.js';
import { checkScopeList, formatScope, parseScope, resolveScope, type ScopeRequest } from './scopes.js';

const expectInvalidScope = (fn: () => unknown, description: string) => expectOAuthError(fn, 400, 'invalid_scope', description);

const MALFORMED = 'the scope parameter is malformed';
const NOT_ALLOWED = 'the requested scope is not allowed for this user or client';

describe('parseScope (RFC 6749 §3.3)', () => {
  it('treats an absent or empty scope as "not requested"', () => {
    expect(parseScope(undefined)).toBeUndefined();
    expect(parseScope('')).toBeUndefined();
  });

  it.each([
    ['profile', ['profile']],
    ['orders:read profile', ['orders:read', 'profile']],
    ['profile orders:read', ['profile', 'orders:read']],
    ['a a b a', ['a', 'b']],
    ['https://api.example.com/orders.read', ['https://api.example.com/orders.read']],
    // Every character the grammar allows: %x21 / %x23-5B / %x5D-7E.
    ["!#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~", ["!#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~"]],
  ])('reads %j', (text, scopes) => {
    expect(parseScope(text)).toEqual(scopes);
  });

  it.each([
    ['a double space', 'profile  orders:read'],
    ['a leading space', ' profile'],
    ['a trailing space', 'profile '],
    ['only a space', ' '],
    ['a double quote', 'profile "orders"'],
    ['a backslash', 'orders\\read'],
    ['a tab separator', 'profile\torders:read'],
    ['a newline', 'profile\norders:read'],
    ['NUL', 'profile\u0000'],
    ['DEL', 'profile\u007f'],
    ['a non-ASCII letter', 'prófile'],
    ['a full-width letter', 'ｐrofile'],
    ['a no-break space separator', 'profile\u00a0orders:read'],
    ['an emoji', 'orders:😀'],
  ])('refuses %s with invalid_scope', (_label, text) => {
    expectInvalidScope(() => parseScope(text), MALFORMED);
  });
});

describe('checkScopeList (scopes an operator names)', () => {
  it('takes scope-tokens, and no list at all', () => {
    expect(checkScopeList(['profile', 'orders:read', "!#[]~"])).toBeUndefined();
    expect(checkScopeList([])).toBeUndefined();
  });

  it('names every scope that is not a scope-token, and only those', () => {
    expect(checkScopeList(['profile', 'a b'])).toBe('not a valid scope: a b');
    expect(checkScopeList(['say"hi"', 'profile', 'back\\slash', ''])).toBe('not a valid scope: say"hi" back\\slash ');
  });
});

describe('formatScope', () => {
  it('joins with single spaces, so parse(format(x)) is x', () => {
    expect(formatScope(['orders:read', 'profile'])).toBe('orders:read profile');
    expect(formatScope([])).toBe('');
    expect(parseScope(formatScope(['orders:read', 'profile']))).toEqual(['orders:read', 'profile']);
  });
});

describe('resolveScope', () => {
  const base: ScopeRequest = {
    requested: undefined,
    clientDefault: ['profile', 'orders:read'],
    clientAllowed: ['profile', 'orders:read', 'orders:write'],
    subjectAllowed: ['profile', 'orders:read', 'orders:write', 'admin'],
  };

  it('grants the requested scope, sorted, when both subject and client may have it', () => {
    expect(resolveScope({ ...base, requested: ['profile', 'orders:write'] })).toEqual(['orders:write', 'profile']);
  });

  it("uses the client's default when nothing is requested", () => {
    expect(resolveScope(base)).toEqual(['orders:read', 'profile']);
  });

  it('narrows the default silently to what the subject may have', () => {
    expect(resolveScope({ ...base, subjectAllowed: ['profile'] })).toEqual(['profile']);
    expect(resolveScope({ ...base, subjectAllowed: [] })).toEqual([]);
  });

  it('narrows the default silently to what the client may have', () => {
    expect(resolveScope({ ...base, clientDefault: ['profile', 'admin'] })).toEqual(['profile']);
  });

  it('refuses a requested scope the subject may not have', () => {
    expectInvalidScope(
      () => resolveScope({ ...base, requested: ['profile', 'orders:write'], subjectAllowed: ['profile', 'orders:read'] }),
      NOT_ALLOWED,
    );
  });

  it('refuses a requested scope the client may not have, even when the subject has it', () => {
    expectInvalidScope(() => resolveScope({ ...base, requested: ['admin'] }), NOT_ALLOWED);
  });

  it('refuses a requested scope nobody has heard of', () => {
    expectInvalidScope(() => resolveScope({ ...base, requested: ['profile', 'unknown'] }), NOT_ALLOWED);
  });

  it('is case-sensitive', () => {
    expectInvalidScope(() => resolveScope({ ...base, requested: ['Profile'] }), NOT_ALLOWED);
    expectInvalidScope(() => resolveScope({ ...base, requested: ['ORDERS:READ'] }), NOT_ALLOWED);
    expect(resolveScope({ ...base, clientDefault: ['PROFILE'] })).toEqual([]);
    expect(
      resolveScope({ ...base, requested: ['Profile'], clientAllowed: ['Profile'], subjectAllowed: ['Profile'] }),
    ).toEqual(['Profile']);
  });
});
