import { describe, expect, it } from 'vitest';
import { findDuplicateKey } from './form.js';

describe('findDuplicateKey', () => {
  it.each([
    ['{"a":"1","b":"2"}', undefined],
    ['{"a":"1","a":"2"}', 'a'],
    ['{ "refresh_token" : "x" , "refresh_token":"y" }', 'refresh_token'],
    ['{"a":{"b":"1","b":"2"}}', undefined], // nested: not a parameter
    ['{"a":"x\\"a\\":","b":"1"}', undefined], // a quote and colon inside a value
    ['{"\\u0061":"1","a":"2"}', 'a'], // the same key spelt with an escape
    ['["a","a"]', undefined],
    ['{"a":', undefined], // not JSON: left to the parser
    ['', undefined],
  ])('%s -> %s', (text, expected) => {
    expect(findDuplicateKey(text)).toBe(expected);
  });
});
