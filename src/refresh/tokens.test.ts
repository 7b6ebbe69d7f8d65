import { describe, expect, it } from 'vitest';
import { createKeyRing } from '../keys/key-encryption.js';
import { generateRefreshToken, hashRefreshToken, isWellFormedRefreshToken, openSuccessor, sealSuccessor, SUCCESSOR_SEAL_PURPOSE } from './tokens.js';

// Fixed values, so that what is stored today is still read the same way after an upgrade: a
// family's token hashes, and a successor sealed before the upgrade for a retry after it.
const PARENT = 'P'.repeat(43);
const SUCCESSOR = 'S'.repeat(43);
const FAMILY = '00000000-0000-4000-8000-000000000001';
const SERVER_KEYS = createKeyRing([Buffer.alloc(32, 7)]).derive(SUCCESSOR_SEAL_PURPOSE);
/** sealSuccessor(PARENT, SUCCESSOR, FAMILY, SERVER_KEYS), as releases before issue 17 sealed it (bound to the family). */
const SEALED = 'VtrN8IgTqjsbs9YLhJJKtmnLVHK4IbpT4CmovpX5BRfqvLIfICGyvHEjw3J6PtEx2sO3wot33HE2j81-OyINro0GVb_7U5E';

/** sealSuccessor(PARENT, SUCCESSOR, SERVER_KEYS), as this release seals it (bound to the parent's hash). */
const SEALED_V2 = 'v2.755OUnWUuXocs5lZEFfJrHaoKeQvQH6ClL5Y1k3SiL6F4zwF6XO6RJuAsIPRUw5NsJQkOMqTxFCnrqltSi2nwfvqF4HVedo';

describe('refresh tokens', () => {
  it('are 43 base64url characters, each one new, and stored as the SHA-256 of the token (base64url)', () => {
    const tokens = new Set(Array.from({ length: 100 }, generateRefreshToken));
    expect(tokens.size).toBe(100);
    for (const token of tokens) expect(isWellFormedRefreshToken(token)).toBe(true);
    expect(hashRefreshToken(PARENT)).toBe('LBoXXTh4msfZ6u39_COgX1CzdClK1stZBH1F-Uf8RZI');
  });
});

describe('sealed successors', () => {
  it('a successor sealed before issue 17 (bound to its family) still opens with its parent, its family and the server key', () => {
    expect(openSuccessor(PARENT, SEALED, FAMILY, SERVER_KEYS)).toBe(SUCCESSOR);
    // Any key of the ring: a new key in front of the old one still opens it.
    expect(openSuccessor(PARENT, SEALED, FAMILY, [Buffer.alloc(32, 1), ...SERVER_KEYS])).toBe(SUCCESSOR);
  });

  it('a successor sealed so opens with nothing else: another parent, another family, another key, or a damaged ciphertext', () => {
    expect(openSuccessor('Q'.repeat(43), SEALED, FAMILY, SERVER_KEYS)).toBeUndefined();
    expect(openSuccessor(PARENT, SEALED, '00000000-0000-4000-8000-000000000002', SERVER_KEYS)).toBeUndefined();
    expect(openSuccessor(PARENT, SEALED, FAMILY, [Buffer.alloc(32, 1)])).toBeUndefined();
    expect(openSuccessor(PARENT, SEALED, FAMILY, [])).toBeUndefined();
    const damaged = Buffer.from(SEALED, 'base64url');
    damaged[damaged.length - 1]! ^= 1;
    expect(openSuccessor(PARENT, damaged.toString('base64url'), FAMILY, SERVER_KEYS)).toBeUndefined();
  });

  it('a successor sealed by this release (bound to its parent) opens with its parent and the server key, whatever family it is read with', () => {
    expect(SEALED_V2.startsWith('v2.')).toBe(true);
    expect(openSuccessor(PARENT, SEALED_V2, FAMILY, SERVER_KEYS)).toBe(SUCCESSOR);
    expect(openSuccessor(PARENT, SEALED_V2, 'not a family', [Buffer.alloc(32, 1), ...SERVER_KEYS])).toBe(SUCCESSOR);
  });

  it('a successor sealed by this release opens with nothing else: another parent, another key, a damaged ciphertext, or without its version', () => {
    expect(openSuccessor('Q'.repeat(43), SEALED_V2, FAMILY, SERVER_KEYS)).toBeUndefined();
    expect(openSuccessor(PARENT, SEALED_V2, FAMILY, [Buffer.alloc(32, 1)])).toBeUndefined();
    expect(openSuccessor(PARENT, SEALED_V2, FAMILY, [])).toBeUndefined();
    const damaged = Buffer.from(SEALED_V2.slice(3), 'base64url');
    damaged[damaged.length - 1]! ^= 1;
    expect(openSuccessor(PARENT, `v2.${damaged.toString('base64url')}`, FAMILY, SERVER_KEYS)).toBeUndefined();
    // Read as a successor of the old kind (bound to the family), it opens with no family.
    expect(openSuccessor(PARENT, SEALED_V2.slice(3), FAMILY, SERVER_KEYS)).toBeUndefined();
  });

  it('seals with the first key of the ring, under a fresh IV each time', () => {
    const [first, second] = [sealSuccessor(PARENT, SUCCESSOR, SERVER_KEYS), sealSuccessor(PARENT, SUCCESSOR, SERVER_KEYS)];
    expect(first).not.toBe(second);
    const rotated = [Buffer.alloc(32, 9), ...SERVER_KEYS];
    const sealed = sealSuccessor(PARENT, SUCCESSOR, rotated);
    expect(openSuccessor(PARENT, sealed, FAMILY, rotated.slice(0, 1))).toBe(SUCCESSOR);
    expect(openSuccessor(PARENT, sealed, FAMILY, SERVER_KEYS)).toBeUndefined();
  });

  it.each([
    ['one character short', 'A'.repeat(42)],
    ['one character long', 'A'.repeat(44)],
    ['a character outside base64url', `${'A'.repeat(42)}+`],
    ['a token behind a prefix', `x${'A'.repeat(43)}`],
    ['a token followed by more', `${'A'.repeat(43)}x`],
  ])('a refresh token %s is not well-formed', (_name, token) => {
    expect(isWellFormedRefreshToken(token)).toBe(false);
  });
});
