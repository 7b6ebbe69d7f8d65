import { describe, expect, it } from 'vitest';
import { csrfTokenFor, generateOpaqueSecret, hashOpaqueSecret, isCsrfTokenOf, isWellFormedOpaqueSecret, verifierMatchesChallenge } from './secrets.js';

describe('opaque secrets', () => {
  it('are 256 random bits in base64url, 43 characters, different every time', () => {
    const values = Array.from({ length: 50 }, () => generateOpaqueSecret());
    for (const value of values) {
      expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(value, 'base64url')).toHaveLength(32);
    }
    expect(new Set(values).size).toBe(50);
  });

  it('are kept as their SHA-256 in base64url', () => {
    // FIPS 180-2's "abc" vector, ba7816bf...f20015ad, in base64url.
    expect(hashOpaqueSecret('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  });

  it('are well formed at 43 base64url characters only', () => {
    expect(isWellFormedOpaqueSecret(generateOpaqueSecret())).toBe(true);
    expect(isWellFormedOpaqueSecret(`aZ09_-${'x'.repeat(37)}`)).toBe(true);
    for (const value of ['', 'a'.repeat(42), 'a'.repeat(44), `${'a'.repeat(42)}=`, `${'a'.repeat(42)}+`, `${'a'.repeat(42)}/`, ` ${'a'.repeat(43)}`, `${'a'.repeat(43)}\n`]) {
      expect(isWellFormedOpaqueSecret(value)).toBe(false);
    }
  });
});

describe('the CSRF token', () => {
  const cookie = 'a'.repeat(43);
  const [k1, k2] = [Buffer.from('k1'), Buffer.from('k2')];
  // HMAC-SHA256 under the key "k1" of the cookie value, base64url.
  const underK1 = 'tZVwn55wL9ZLc9OuPXk6Jo9DdkYz763GitScILCQTVk';

  it('is the HMAC of the cookie value under the first key of the ring', () => {
    expect(csrfTokenFor(cookie, [k1, k2])).toBe(underK1);
    expect(csrfTokenFor(cookie, [k2, k1])).not.toBe(underK1);
  });

  it('is taken under any key of the ring, so a rotation keeps open forms valid', () => {
    expect(isCsrfTokenOf(underK1, cookie, [k1])).toBe(true);
    expect(isCsrfTokenOf(underK1, cookie, [k2, k1])).toBe(true);
    expect(isCsrfTokenOf(csrfTokenFor(cookie, [k2]), cookie, [k1, k2])).toBe(true);
  });

  it('is refused under a key that is not in the ring, for another cookie, or missing either half', () => {
    expect(isCsrfTokenOf(underK1, cookie, [k2])).toBe(false);
    expect(isCsrfTokenOf(underK1, cookie, [])).toBe(false);
    expect(isCsrfTokenOf(underK1, 'b'.repeat(43), [k1])).toBe(false);
    expect(isCsrfTokenOf(undefined, cookie, [k1])).toBe(false);
    expect(isCsrfTokenOf(underK1, undefined, [k1])).toBe(false);
    expect(isCsrfTokenOf('', cookie, [k1])).toBe(false);
  });

  it('is refused when it differs in one character, or is cut short or lengthened', () => {
    const flipped = `${underK1.slice(0, -1)}${underK1.endsWith('A') ? 'B' : 'A'}`;
    expect(isCsrfTokenOf(flipped, cookie, [k1])).toBe(false);
    expect(isCsrfTokenOf(underK1.slice(0, -1), cookie, [k1])).toBe(false);
    expect(isCsrfTokenOf(`${underK1}A`, cookie, [k1])).toBe(false);
  });

  it('is refused for a cookie value that generateOpaqueSecret cannot have made, even with its matching HMAC', () => {
    for (const planted of ['short', 'a'.repeat(44), `${'a'.repeat(42)}!`]) {
      expect(isCsrfTokenOf(csrfTokenFor(planted, [k1]), planted, [k1])).toBe(false);
    }
  });
});

describe('PKCE S256 (RFC 7636 section 4.6)', () => {
  // RFC 7636 Appendix B.
  const verifier = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
  const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

  it("takes the verifier whose SHA-256 is the challenge (the RFC's example)", () => {
    expect(verifierMatchesChallenge(verifier, challenge)).toBe(true);
  });

  it('refuses another verifier, a challenge that differs in one character, or one of another length', () => {
    expect(verifierMatchesChallenge(`${verifier.slice(0, -1)}j`, challenge)).toBe(false);
    expect(verifierMatchesChallenge(verifier, `${challenge.slice(0, -1)}N`)).toBe(false);
    expect(verifierMatchesChallenge(verifier, challenge.slice(0, -1))).toBe(false);
    expect(verifierMatchesChallenge(verifier, `${challenge}=`)).toBe(false);
    expect(verifierMatchesChallenge(verifier, verifier)).toBe(false);
  });
});
