import { beforeEach, describe, expect, it } from 'vitest';
import { OAuthError } from '../oauth/errors.js';
import { checkNewPassword, createPasswordHasher, generatePassword, hasControlCharacters, type PasswordHasher } from './passwords.js';

/** The cheapest Argon2id the library takes: these tests check behaviour, not cost. */
const LOW = { memoryKib: 256, iterations: 1, parallelism: 1 } as const;

const TOO_SHORT = 'the password must have at least 8 characters';
const TOO_LONG = 'the password must have at most 256 characters';
const COMMON = 'the password is too common; choose another';
const IS_USERNAME = 'the password must not be the username';

describe('checkNewPassword (NIST SP 800-63B)', () => {
  it('takes 8 characters and refuses 7', () => {
    expect(checkNewPassword('kq7#vb2!')).toBeUndefined();
    expect(checkNewPassword('kq7#vb2')).toBe(TOO_SHORT);
    expect(checkNewPassword('')).toBe(TOO_SHORT);
  });

  it('takes 256 characters and refuses 257', () => {
    const long = 'kq7#vb2!'.repeat(32);
    expect(long).toHaveLength(256);
    expect(checkNewPassword(long)).toBeUndefined();
    expect(checkNewPassword(`${long}x`)).toBe(TOO_LONG);
  });

  it('counts characters (code points), not UTF-16 units', () => {
    expect(checkNewPassword('🔑'.repeat(8))).toBeUndefined();
    expect(checkNewPassword('🔑'.repeat(7))).toBe(TOO_SHORT); // 14 UTF-16 units, 7 characters
    expect(checkNewPassword('🔑'.repeat(257))).toBe(TOO_LONG);
  });

  it('has no composition rules', () => {
    expect(checkNewPassword('lowercaseonlypassphrase')).toBeUndefined();
    expect(checkNewPassword('73920581')).toBeUndefined();
  });

  it.each(['password', 'PASSWORD', 'PassWord', 'iloveyou', 'ILoveYou', '12345678', 'p@ssw0rd', 'P@SSW0RD', 'trustno1'])(
    'refuses the common password %j',
    (password) => {
      expect(checkNewPassword(password)).toBe(COMMON);
    },
  );

  it('refuses a common password typed in full-width characters (normalised first)', () => {
    expect(checkNewPassword('ｐａｓｓｗｏｒｄ')).toBe(COMMON);
  });

  it('refuses the username as password, whatever its case or width', () => {
    expect(checkNewPassword('alice-wonderland', 'alice-wonderland')).toBe(IS_USERNAME);
    expect(checkNewPassword('Alice-Wonderland', 'alice-wonderland')).toBe(IS_USERNAME);
    expect(checkNewPassword('ALICE-WONDERLAND', 'alice-wonderland')).toBe(IS_USERNAME);
    expect(checkNewPassword('ａｌｉｃｅ－ｗｏｎｄｅｒｌａｎｄ', 'alice-wonderland')).toBe(IS_USERNAME);
    expect(checkNewPassword('alice-wonderland', 'someone-else')).toBeUndefined();
    expect(checkNewPassword('alice-wonderland')).toBeUndefined();
  });

  it('keeps spaces: a passphrase with spaces is fine, only spaces is not', () => {
    expect(checkNewPassword('correct horse battery staple')).toBeUndefined();
    expect(checkNewPassword('  kq7#vb  ')).toBeUndefined(); // 6 visible characters plus 4 spaces
    expect(checkNewPassword('        ')).toBe('the password must not be only spaces');
  });

  it('refuses control characters', () => {
    expect(checkNewPassword('kq7#vb2!\u0000')).toBe('the password must not contain control characters');
    expect(checkNewPassword('kq7#\nvb2!')).toBe('the password must not contain control characters');
    expect(checkNewPassword('kq7#\tvb2!')).toBe('the password must not contain control characters');
  });
});

describe('hasControlCharacters', () => {
  it('finds C0, DEL and C1 controls and nothing else', () => {
    for (const text of ['a\u0000', 'a\r', 'a\n', 'a\u001f', 'a\u007f', 'a\u0085']) expect(hasControlCharacters(text)).toBe(true);
    for (const text of ['a b', 'é', '🔑', 'a\u00a0b']) expect(hasControlCharacters(text)).toBe(false);
  });
});

describe('createPasswordHasher', () => {
  // A hasher of each test's own, made inside the test: one made while the file loads would not
  // count as run by these tests (npm run mutate would think nothing here checks it).
  let hasher: PasswordHasher;
  beforeEach(() => {
    hasher = createPasswordHasher(LOW);
  });

  it('makes Argon2id PHC strings at the configured parameters, salted', async () => {
    const first = await hasher.hash('kq7#vb2!');
    const second = await hasher.hash('kq7#vb2!');
    expect(first).toMatch(/^\$argon2id\$v=19\$m=256,t=1,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    expect(second).not.toBe(first);
    expect(first).not.toContain('kq7#vb2!');
  });

  it('verifies the right password and nothing else', async () => {
    const hash = await hasher.hash('kq7#vb2!');
    expect(await hasher.verify(hash, 'kq7#vb2!')).toBe(true);
    expect(await hasher.verify(hash, 'kq7#vb2?')).toBe(false);
    expect(await hasher.verify(hash, 'KQ7#VB2!')).toBe(false);
    expect(await hasher.verify(hash, '')).toBe(false);
  });

  it('verifies the NFC and NFD forms of a password the same', async () => {
    const nfc = 'crème brûlée'.normalize('NFC');
    const nfd = 'crème brûlée'.normalize('NFD');
    expect(nfc).not.toBe(nfd);
    const fromNfc = await hasher.hash(nfc);
    const fromNfd = await hasher.hash(nfd);
    expect(await hasher.verify(fromNfc, nfd)).toBe(true);
    expect(await hasher.verify(fromNfd, nfc)).toBe(true);
    expect(await hasher.verify(fromNfc, 'creme brulee')).toBe(false);
  });

  it('keeps surrounding spaces as part of the password', async () => {
    const hash = await hasher.hash('  kq7#vb2!  ');
    expect(await hasher.verify(hash, '  kq7#vb2!  ')).toBe(true);
    expect(await hasher.verify(hash, 'kq7#vb2!')).toBe(false);
    expect(await hasher.verify(hash, ' kq7#vb2! ')).toBe(false);
  });

  it('answers false, not an exception, for a malformed stored hash', async () => {
    expect(await hasher.verify('', 'kq7#vb2!')).toBe(false);
    expect(await hasher.verify('not a hash', 'kq7#vb2!')).toBe(false);
    expect(await hasher.verify('$argon2id$v=19$m=256,t=1,p=1$AAAA$', 'kq7#vb2!')).toBe(false);
  });

  it('asks for a rehash only when the parameters differ', async () => {
    const hash = await hasher.hash('kq7#vb2!');
    expect(hasher.needsRehash(hash)).toBe(false);
    expect(createPasswordHasher({ ...LOW, iterations: 2 }).needsRehash(hash)).toBe(true);
    expect(createPasswordHasher({ ...LOW, memoryKib: 512 }).needsRehash(hash)).toBe(true);
  });

  it('keeps one dummy hash at the configured parameters that no password matches', async () => {
    const dummy = await hasher.dummyHash();
    expect(await hasher.dummyHash()).toBe(dummy);
    expect(dummy).toMatch(/^\$argon2id\$v=19\$m=256,t=1,p=1\$/);
    expect(await hasher.verify(dummy, '')).toBe(false);
    expect(await hasher.verify(dummy, 'kq7#vb2!')).toBe(false);
  });
});

describe('createPasswordHasher under load', () => {
  it('tells observe each operation and how many seconds it took', async () => {
    const seen: [string, number][] = [];
    const observed = createPasswordHasher(LOW, undefined, (operation, seconds) => seen.push([operation, seconds]));
    const started = performance.now();
    const hash = await observed.hash('kq7#vb2!');
    expect(await observed.verify(hash, 'kq7#vb2!')).toBe(true);
    expect(await observed.verify('not a hash', 'kq7#vb2!')).toBe(false);
    const elapsed = (performance.now() - started) / 1000;
    expect(seen.map(([operation]) => operation)).toEqual(['hash', 'verify', 'verify']);
    // Each took some time, and together no more than the whole: seconds, not milliseconds.
    for (const [, seconds] of seen) expect(seconds).toBeGreaterThan(0);
    expect(seen.reduce((sum, [, seconds]) => sum + seconds, 0)).toBeLessThanOrEqual(elapsed);
  });

  it('runs maxConcurrent at once, queues queueLimit more, and refuses the rest: 503 with Retry-After', async () => {
    const bounded = createPasswordHasher(LOW, { maxConcurrent: 1, queueLimit: 1 });
    const running = [bounded.hash('kq7#vb2!'), bounded.hash('kq7#vb2?')]; // one runs, one waits
    const refused: unknown = await bounded.verify('not a hash', 'kq7#vb2!').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OAuthError);
    const { status, headers } = refused as OAuthError;
    expect({ status, headers, body: (refused as OAuthError).toJSON() }).toEqual({
      status: 503,
      headers: { 'Retry-After': '1' },
      body: { error: 'temporarily_unavailable', error_description: 'the service is busy; retry shortly' },
    });
    const [first, second] = await Promise.all(running);
    expect(await bounded.verify(first!, 'kq7#vb2!')).toBe(true);
    expect(await bounded.verify(second!, 'kq7#vb2?')).toBe(true);
    expect(bounded.load.peak).toBe(1);
  });

  it('does not remember a dummy hash that failed for want of a slot: the next call makes one', async () => {
    const bounded = createPasswordHasher(LOW, { maxConcurrent: 1, queueLimit: 0 });
    const running = bounded.hash('kq7#vb2!');
    await expect(bounded.dummyHash()).rejects.toMatchObject({ code: 'temporarily_unavailable', status: 503 });
    await running;
    const dummy = await bounded.dummyHash();
    expect(dummy).toMatch(/^\$argon2id\$v=19\$m=256,t=1,p=1\$/);
    expect(await bounded.dummyHash()).toBe(dummy);
  });
});

describe('generatePassword', () => {
  it('makes 128 random bits, base64url without padding', () => {
    const passwords = new Set(Array.from({ length: 20 }, () => generatePassword()));
    expect(passwords.size).toBe(20);
    for (const password of passwords) expect(password).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
