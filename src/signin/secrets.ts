import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 bits from the CSPRNG, base64url (43 characters): session cookies and authorization codes. */
export function generateOpaqueSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** What the database keeps instead of a 256-bit random value; such a value needs no slow hash. */
export function hashOpaqueSecret(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

/** Anything that cannot be a value generateOpaqueSecret made is refused without a database look-up. */
export function isWellFormedOpaqueSecret(value: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(value);
}

/**
 * The sign-in form's CSRF token (a signed double submit, OWASP CSRF Prevention Cheat Sheet): the
 * form carries an HMAC of a random value that only the CSRF cookie holds. A cross-site page can
 * make the browser send the cookie, but cannot read it, so it cannot write the matching field;
 * and without the server key, a value an attacker plants in the cookie (the `__Host-` prefix
 * already stops a sibling domain from doing so over https) comes with no field that matches it.
 */
export function csrfTokenFor(cookieValue: string, keys: readonly Buffer[]): string {
  return createHmac('sha256', keys[0]!).update(cookieValue).digest('base64url');
}

/** Whether `field` is the CSRF token of `cookieValue` under any key of the ring. */
export function isCsrfTokenOf(field: string | undefined, cookieValue: string | undefined, keys: readonly Buffer[]): boolean {
  if (field === undefined || cookieValue === undefined || !isWellFormedOpaqueSecret(cookieValue)) return false;
  const presented = Buffer.from(field);
  return keys.some((key) => {
    const expected = Buffer.from(createHmac('sha256', key).update(cookieValue).digest('base64url'));
    return expected.length === presented.length && timingSafeEqual(expected, presented);
  });
}

/** RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge, compared in constant time. */
export function verifierMatchesChallenge(verifier: string, challenge: string): boolean {
  const computed = Buffer.from(createHash('sha256').update(verifier, 'ascii').digest('base64url'));
  const expected = Buffer.from(challenge);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}
