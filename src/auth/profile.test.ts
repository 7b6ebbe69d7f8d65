import { describe, expect, it } from 'vitest';
import { checkAttributes, normaliseEmail, normaliseName } from './profile.js';

describe('normaliseEmail', () => {
  it('trims, lowercases the domain and keeps the local part as given', () => {
    expect(normaliseEmail('  Alice.Smith+tag@Example.COM ')).toBe('Alice.Smith+tag@example.com');
    expect(normaliseEmail("o'brien@xn--bcher-kva.example")).toBe("o'brien@xn--bcher-kva.example");
  });

  it.each([
    '',
    'plain',
    '@example.com',
    'a@',
    'a@localhost',
    'a@example.123',
    'a..b@example.com',
    'a.@example.com',
    'a b@example.com',
    '"a"@example.com',
    'a@[192.0.2.1]',
    'a@-example.com',
    'a@exa_mple.com',
    'ü@example.com',
    `${'a'.repeat(65)}@example.com`,
    `a@${'b'.repeat(250)}.com`,
  ])('refuses %j', (input) => {
    expect(() => normaliseEmail(input)).toThrow('the email is not a valid address (local-part@domain.example)');
  });
});

describe('normaliseName', () => {
  it('trims, and an empty name is none', () => {
    expect(normaliseName('  Zoë  ')).toBe('Zoë');
    expect(normaliseName('   ')).toBeNull();
    expect(() => normaliseName('x'.repeat(201))).toThrow('a name has at most 200 characters and no control characters');
  });
});

describe('checkAttributes', () => {
  it('takes a JSON object within 4096 bytes, 5 levels deep', () => {
    expect(checkAttributes({ a: { b: { c: { d: [1] } } } }).json).toBe('{"a":{"b":{"c":{"d":[1]}}}}');
    expect(checkAttributes({ x: 'é'.repeat(2043) }).json.length).toBe(2051); // 4086 + 8 bytes of UTF-8: 4094
  });

  it.each<[unknown, string]>([
    [[], 'attributes must be a JSON object'],
    [new Date(0), 'attributes must be a JSON object'],
    [{ n: Number.NaN }, 'attribute numbers must be finite'],
    [{ a: [[[[[1]]]]] }, 'attributes nest at most 5 levels deep'],
    [{ x: 'é'.repeat(2045) }, 'attributes take at most 4096 bytes as JSON'],
    [{ '': 1 }, 'attribute names are 1 to 64 letters, digits, _ or -'],
    [{ f: () => 1 }, 'attribute values must be JSON values'],
  ])('refuses %j', (input, message) => {
    expect(() => checkAttributes(input)).toThrow(message);
  });
});
