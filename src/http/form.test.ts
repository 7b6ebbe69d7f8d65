import { describe, expect, it } from 'vitest';
import { findDuplicateKey } from './form.js';

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
    ['{"a" \t\r\n : "1", "a":"2"}', 'a'], // JSON whitespace before the colon
    ['{"a":"x\\"a\\":","b":"1"}', undefined], // a quote and colon inside a value
    ['{"\\u0061":"1","a":"2"}', 'a'], // the same key spelt with an escape
    ['["a","a"]', undefined],
    ['{"a":', undefined], // not JSON: left to the parser
    ['', undefined],
  ])('%s -> %s', (text, expected) => {
    expect(findDuplicateKey(text)).toBe(expected);
  });
});
