import { describe, expect, it } from 'vitest';
import { expectOAuthError } from '../../test/helpers/oauth-error.js';
import { findDuplicateKey, isJsonButNotObject, readParams, safeName } from './form.js';

describe('findDuplicateKey', () => {
  it.each([
    ['{"a":"1","b":"2"}', undefined],
    ['{"a":"1","a":"2"}', 'a'],
    ['{ "refresh_token" : "x" , "refresh_token":"y" }', 'refresh_token'],
    ['{"a":{"b":"1","b":"2"}}', 'b'], // nested: refused too, wherever it could change meaning
    ['{"a":{"b":"1"},"b":"2"}', undefined], // the same name in two objects
    ['{"a":[{"b":"1"},{"b":"2"}]}', undefined], // two objects in an array
    ['{"a":[{"b":"1","b":"2"}]}', 'b'],
    ['[{"a":"1"},{"a":"2","a":"3"}]', 'a'],
    ['{"scopes":["a"],"scopes":["admin"]}', 'scopes'], // an array closes its own level, not the object's
    ['{"a":[],"a":"2"}', 'a'],
    ['{"a" \t\r\n : "1", "a":"2"}', 'a'], // JSON whitespace before the colon
    ['{"a":"x\\"a\\":","b":"1"}', undefined], // a quote and colon inside a value
    ['{"a":"x","b":"x"}', undefined], // values are not names
    ['{"a\\"b":"1","a\\"b":"2"}', 'a"b'], // an escaped quote does not end a name
    ['{"a\\\\":"1","a\\\\":"2"}', 'a\\'], // an escaped backslash does not escape the quote after it
    ['{"\\u0061":"1","a":"2"}', 'a'], // the same key spelt with an escape
    ['["a","a"]', undefined],
    ['["a":"1","a":"2"]', undefined], // strings in an array are never names: not JSON, left to the parser
    ['{"\\x":"1","a":"1","a":"2"}', undefined], // an invalid escape: not JSON, left to the parser
    ['{"a":', undefined], // not JSON: left to the parser
    ['"a":"1"', undefined], // nor is a name outside any object
    ['{"a', undefined], // a string that never ends
    ['', undefined],
  ])('%s -> %s', (text, expected) => {
    expect(findDuplicateKey(text)).toBe(expected);
  });
});

describe('isJsonButNotObject', () => {
  it.each([
    ['["a"]', true],
    ['"x"', true],
    ['null', true],
    ['42', true],
    ['\uFEFF"x"', true], // a byte order mark before a string
    [' \r\n\t[]', true],
    ['{"a":"1"}', false],
    [' \n{"a":"1"}', false], // white space before the object
    ['\uFEFF{"a":"1"}', false],
    ['[1,', false], // not JSON at all: the parser says so
    ['', false],
  ])('%j -> %s', (text, expected) => {
    expect(isJsonButNotObject(text)).toBe(expected);
  });
});

const expectInvalidRequest = (fn: () => unknown, description: string) => expectOAuthError(fn, 400, 'invalid_request', description);

describe('readParams (RFC 6749 §3.2)', () => {
  it.each([null, undefined, 'grant_type=password', 42, ['a', 'b']])('refuses a body that is not a set of parameters: %j', (body) => {
    expectInvalidRequest(() => readParams(body), 'the request body must be a set of parameters');
  });

  it('refuses a repeated parameter, and any value that is not a string', () => {
    expectInvalidRequest(() => readParams({ scope: 'a', username: ['a', 'b'] }), 'the parameter username is repeated');
    expectInvalidRequest(() => readParams({ username: 'a', password: 42 }), 'the parameter password must be a string');
    expectInvalidRequest(() => readParams({ password: { length: 1 } }), 'the parameter password must be a string');
  });

  it('returns the parameters in an object without a prototype', () => {
    const params = readParams(JSON.parse('{"grant_type":"password","constructor":"x","__proto__":"y"}'));
    expect(Object.getPrototypeOf(params)).toBeNull();
    expect(Object.entries(params)).toEqual([
      ['grant_type', 'password'],
      ['constructor', 'x'],
      ['__proto__', 'y'],
    ]);
  });
});

describe('safeName', () => {
  it('replaces every character RFC 6749 §5.2 does not allow in a description by ?', () => {
    expect(safeName('a b"c\\d\né\x7f!#[]~')).toBe('a?b?c?d???!#[]~');
  });

  it('cuts a name longer than 40 characters', () => {
    expect(safeName('x'.repeat(40))).toBe('x'.repeat(40));
    expect(safeName(`${'x'.repeat(40)}y`)).toBe(`${'x'.repeat(40)}...`);
  });
});
