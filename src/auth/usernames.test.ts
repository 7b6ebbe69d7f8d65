import { describe, expect, it } from 'vitest';
import { normaliseUsername } from './usernames.js';

describe('normaliseUsername: look-alikes meet at one canonical form', () => {
  it.each([
    ['alice', 'alice'],
    ['Alice', 'alice'],
    ['ALICE', 'alice'],
    ['ａｌｉｃｅ', 'alice'], // full-width (NFKC)
    ['ＡＬＩＣＥ', 'alice'], // full-width capitals (NFKC, then case fold)
    ['\u212Aate', 'kate'], // KELVIN SIGN is a compatibility K
    ['\uFB01ona', 'fiona'], // the "fi" ligature
    ['STRASSE', 'strasse'],
    ['straße', 'strasse'],
    ['Straße', 'strasse'],
    ['e\u0301lise', 'élise'], // NFD input composes
    ['bob.smith+tag@example.com', 'bob.smith+tag@example.com'],
    ['x'.repeat(64), 'x'.repeat(64)],
  ])('%j -> %j', (raw, canonical) => {
    expect(normaliseUsername(raw)).toBe(canonical);
  });

  it('maps the variants of one name to the same string', () => {
    const forms = ['Alice', 'ALICE', 'alice', 'ａｌｉｃｅ', 'ＡＬＩＣＥ'].map(normaliseUsername);
    expect(new Set(forms)).toEqual(new Set(['alice']));
    expect(normaliseUsername('STRASSE')).toBe(normaliseUsername('straße'));
    // Capital, medial and final sigma: whichever form is canonical, all three spellings meet there.
    const sigmas = new Set(['ΟΔΟΣ', 'οδος', 'οδοσ'].map(normaliseUsername));
    expect(sigmas.size).toBe(1);
    expect(sigmas.has(undefined)).toBe(false);
  });

  it('keeps different names apart', () => {
    expect(normaliseUsername('alice')).not.toBe(normaliseUsername('alicia'));
    expect(normaliseUsername('élise')).not.toBe(normaliseUsername('elise'));
  });

  it('counts length in code points after normalisation', () => {
    expect(normaliseUsername('😀'.repeat(64))).toBe('😀'.repeat(64));
    expect(normaliseUsername('😀'.repeat(65))).toBeUndefined();
  });
});

describe('normaliseUsername: refusals', () => {
  it.each([
    ['empty', ''],
    ['65 characters', 'a'.repeat(65)],
    ['65 full-width characters', 'ａ'.repeat(65)],
    ['a space inside', 'alice smith'],
    ['a leading space', ' alice'],
    ['a trailing space', 'alice '],
    ['only a space', ' '],
    ['a tab', 'alice\tsmith'],
    ['a newline', 'alice\n'],
    ['a carriage return', 'alice\r'],
    ['NUL', 'alice\u0000'],
    ['DEL', 'alice\u007f'],
    ['a C1 control', 'alice\u0085'],
    ['a no-break space (NFKC makes it a space)', 'alice\u00a0smith'],
    ['an ideographic space', 'alice\u3000smith'],
    ['a zero-width space', 'ali\u200bce'],
    ['a zero-width joiner', 'ali\u200dce'],
    ['a right-to-left override', '\u202Eecila'],
    ['a line separator', 'alice\u2028'],
    ['a private-use code point', 'alice\uE000'],
    ['an unassigned code point', 'alice\u0378'],
    ['a lone surrogate', 'alice\uD800'],
  ])('refuses %s', (_label, raw) => {
    expect(normaliseUsername(raw)).toBeUndefined();
  });
});
