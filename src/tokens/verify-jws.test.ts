import { createHmac, createPublicKey, generateKeyPairSync, type KeyObject, constants as cryptoConstants, sign } from 'node:crypto';
import { errors as joseErrors, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import type { Deps } from '../deps.js';
import type { KeyStore } from '../keys/key-store.js';
import { OAuthError } from '../oauth/errors.js';
import { verifyAccessToken } from './access-token.js';
import { type JwtFailure, JwtVerificationError, verifyJwt } from './verify-jws.js';

// A differential test: every token of the corpus goes to Tessera's verifyAccessToken (node:crypto,
// src/tokens/verify-jws.ts) and to the jose jwtVerify it replaced, called with the same options,
// and both must give the same answer: the same claims, or the same refusal. A handful of tokens,
// which Tessera never signs, are refused by Tessera only: they are listed apart, with why.

/** A fixed clock, nowhere near the real one: `now` is N, and the 999 ms past it must be floored. */
const N = 2_000_000_000;
const clock = { now: () => N * 1000 + 999 };
const ISSUER = 'https://tessera.test';
const AUDIENCE = 'https://tessera.test/api';
const CLIENT_AUDIENCE = 'https://orders.test';
const TTL = 900;
const TOLERANCE = 5;

const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits });
const keyA = rsa(2048);
const keyB = rsa(2048);
const stranger = rsa(2048);
const small = rsa(1024);
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const publicKeys = new Map<string, KeyObject>([
  ['kA', keyA.publicKey],
  ['kB', keyB.publicKey],
  ['kSmall', small.publicKey],
  ['kEc', ec.publicKey],
  // Never in Tessera's set; here to show that a private key would not verify anything either.
  ['kPrivate', keyA.privateKey],
  // What a kid of 42 or null would find, were it turned into a string.
  ['42', keyA.publicKey],
  ['null', keyA.publicKey],
]);
const deps = {
  config: { issuer: ISSUER, audience: AUDIENCE, accessTokenTtl: TTL } as Deps['config'],
  clock,
  keys: { current: () => ({ publicKeys }) } as unknown as KeyStore,
};

// --- building tokens -------------------------------------------------------------------------

const b64 = (value: string | Buffer) => Buffer.from(value).toString('base64url');
const json = (value: unknown) => b64(JSON.stringify(value));

type Signer = (input: string) => string;
const rs256 = (key: KeyObject = keyA.privateKey): Signer => (input) => sign('sha256', Buffer.from(input), key).toString('base64url');
const rs384: Signer = (input) => sign('sha384', Buffer.from(input), keyA.privateKey).toString('base64url');
const ps256: Signer = (input) =>
  sign('sha256', Buffer.from(input), { key: keyA.privateKey, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64url');
const es256: Signer = (input) => sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
const publicPem = keyA.publicKey.export({ format: 'pem', type: 'spki' });
const hs256WithPublicKey: Signer = (input) => createHmac('sha256', publicPem).update(input).digest('base64url');

const HEADER = { alg: 'RS256', typ: 'at+jwt', kid: 'kA' };
const CLAIMS = {
  iss: ISSUER,
  sub: 'user-1',
  aud: [CLIENT_AUDIENCE, AUDIENCE],
  client_id: 'client-1',
  scope: 'orders:read profile',
  jti: 'e1b2c3d4-0000-4000-8000-000000000001',
  iat: N - 10,
  exp: N + TTL - 10,
  sid: 'session-1',
};

interface Parts {
  /** Merged into the genuine header; a member set to undefined is left out. */
  readonly header?: Record<string, unknown>;
  readonly claims?: Record<string, unknown>;
  /** The segments as sent, instead of the JSON above. */
  readonly headerSegment?: string;
  readonly payloadSegment?: string;
  readonly signer?: Signer;
}

/** A token signed (by default) exactly as Tessera signs: RS256 by key A, at+jwt, kid kA. */
function token(parts: Parts = {}): string {
  const header = parts.headerSegment ?? json({ ...HEADER, ...parts.header });
  const payload = parts.payloadSegment ?? json({ ...CLAIMS, ...parts.claims });
  const input = `${header}.${payload}`;
  return `${input}.${(parts.signer ?? rs256())(input)}`;
}

/** The genuine claims with one member written as raw JSON text (numbers JSON.stringify cannot write). */
function rawClaim(name: string, jsonText: string): string {
  const { [name]: _dropped, ...rest } = CLAIMS as Record<string, unknown>;
  return b64(`${JSON.stringify(rest).slice(0, -1)},"${name}":${jsonText}}`);
}

const segments = (value: string) => value.split('.') as [string, string, string];
const withSignature = (value: string, edit: (signature: string) => string) => {
  const [h, p, s] = segments(value);
  return `${h}.${p}.${edit(s)}`;
};

/** A genuine token whose signature starts with a zero byte (about one in 256). */
function tokenWithLeadingZeroSignature(): string {
  for (let i = 0; ; i++) {
    const candidate = token({ claims: { jti: `zero-${i}` } });
    if (Buffer.from(segments(candidate)[2], 'base64url')[0] === 0) return candidate;
  }
}

/** A genuine token whose signature spells `-` or `_` somewhere (nearly all do). */
function tokenWithUrlSafeCharacters(): string {
  for (let i = 0; ; i++) {
    const candidate = token({ claims: { jti: `chars-${i}` } });
    if (/[-_]/.test(segments(candidate)[2])) return candidate;
  }
}

/** A genuine token of exactly `length` characters, a claim grown to fit (and the header, for the lengths base64url skips). */
function tokenOfLength(length: number): string {
  for (let headerPad = 0; headerPad < 4; headerPad++) {
    const header = headerPad === 0 ? {} : { pad: 'x'.repeat(headerPad) };
    const bare = token({ header, claims: { pad: '' } }).length;
    // Three bytes of claim make four characters of base64url.
    for (let pad = Math.max(0, Math.floor(((length - bare) * 3) / 4) - 3); ; pad++) {
      const candidate = token({ header, claims: { pad: 'x'.repeat(pad) } });
      if (candidate.length === length) return candidate;
      if (candidate.length > length) break;
    }
  }
  throw new Error(`no token of exactly ${length} characters`);
}

// --- the two verifiers -----------------------------------------------------------------------

type Outcome = { readonly accepted: unknown } | { readonly refused: string };

const NOT_VALID = 'the access token is not valid';
const EXPIRED = 'the access token has expired';
const MALFORMED = 'the access token is malformed';
const TOO_LONG = 'the access token is too long';

async function tessera(value: string, audience?: string): Promise<Outcome> {
  try {
    return { accepted: await verifyAccessToken(deps, value, audience) };
  } catch (error) {
    expect(error).toBeInstanceOf(OAuthError);
    const oauth = error as OAuthError;
    expect(oauth.code).toBe('invalid_token');
    expect(oauth.status).toBe(401);
    expect(oauth.headers).toEqual({
      'WWW-Authenticate': `Bearer realm="tessera", error="invalid_token", error_description="${oauth.description}"`,
    });
    return { refused: oauth.description };
  }
}

/** verifyAccessToken as it was, on jose's jwtVerify: the reference. */
async function jose(value: string, audience = AUDIENCE): Promise<Outcome> {
  if (value.length > 8192) return { refused: TOO_LONG };
  try {
    const { payload } = await jwtVerify(
      value,
      (header) => {
        const key = typeof header.kid === 'string' ? publicKeys.get(header.kid) : undefined;
        if (key === undefined) throw new joseErrors.JWKSNoMatchingKey();
        return key;
      },
      {
        algorithms: ['RS256'],
        typ: 'at+jwt',
        issuer: ISSUER,
        audience,
        requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
        clockTolerance: TOLERANCE,
        maxTokenAge: TTL,
        currentDate: new Date(clock.now()),
      },
    );
    if (typeof payload['client_id'] !== 'string' || typeof payload['scope'] !== 'string') return { refused: MALFORMED };
    return { accepted: payload };
  } catch (error) {
    return { refused: error instanceof joseErrors.JWTExpired ? EXPIRED : NOT_VALID };
  }
}

/** Why verify-jws.ts refuses a token (undefined: it accepts it). */
function failureOf(value: string, audience = AUDIENCE): JwtFailure | undefined {
  try {
    verifyJwt(value, {
      keys: publicKeys,
      typ: 'at+jwt',
      issuer: ISSUER,
      audience,
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      clockTolerance: TOLERANCE,
      maxTokenAge: TTL,
      now: N,
    });
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(JwtVerificationError);
    return (error as JwtVerificationError).failure;
  }
}

// --- the corpus ------------------------------------------------------------------------------

interface Case {
  readonly what: string;
  readonly token: string;
  /** What both answer: 'accepted', or the refusal's description. */
  readonly expected: 'accepted' | string;
  /** Why verify-jws.ts refuses it (when verifyAccessToken's own checks do not come first). */
  readonly failure?: JwtFailure;
  readonly audience?: string;
}

const accepted = (what: string, value: string, audience?: string): Case => ({ what, token: value, expected: 'accepted', ...(audience ? { audience } : {}) });
const refused = (what: string, value: string, failure: JwtFailure): Case => ({
  what,
  token: value,
  expected: failure === 'expired' ? EXPIRED : NOT_VALID,
  failure,
});
const malformedClaims = (what: string, value: string): Case => ({ what, token: value, expected: MALFORMED });

const genuine = token();
const [genuineHeader, genuinePayload, genuineSignature] = segments(genuine);

const CORPUS: readonly Case[] = [
  // Tokens as Tessera signs them, and what their checks must still let through.
  accepted('a genuine token (aud an array)', genuine),
  accepted('aud a single string', token({ claims: { aud: AUDIENCE } })),
  accepted('the caller names another audience the token holds', genuine, CLIENT_AUDIENCE),
  accepted('signed by the other published key', token({ header: { kid: 'kB' }, signer: rs256(keyB.privateKey) })),
  accepted('typ AT+JWT', token({ header: { typ: 'AT+JWT' } })),
  accepted('typ application/at+jwt', token({ header: { typ: 'application/at+jwt' } })),
  accepted('typ Application/AT+JWT', token({ header: { typ: 'Application/AT+JWT' } })),
  accepted('jku, x5u and jwk naming other keys are never consulted', token({
    header: { jku: 'https://evil.test/jwks', x5u: 'https://evil.test/cert', jwk: stranger.publicKey.export({ format: 'jwk' }) },
  })),
  accepted('aud an array with other members of other types', token({ claims: { aud: [42, null, AUDIENCE] } })),
  accepted('sub a number (jose checks presence only)', token({ claims: { sub: 42 } })),
  accepted('sub and jti null (present, which is all jose asks of them)', token({ claims: { sub: null, jti: null } })),
  accepted('exp 4 s past (within the tolerance)', token({ claims: { exp: N - 4 } })),
  accepted('exp 4.999 s past', token({ claims: { exp: N - 4.999 } })),
  accepted('exp 1e400 (Infinity)', token({ payloadSegment: rawClaim('exp', '1e400') })),
  accepted('nbf now', token({ claims: { nbf: N } })),
  accepted('nbf 5 s ahead (within the tolerance)', token({ claims: { nbf: N + 5 } })),
  accepted('nbf negative', token({ claims: { nbf: -1 } })),
  accepted('iat 5 s ahead (within the tolerance)', token({ claims: { iat: N + 5 } })),
  accepted('iat exactly TTL + tolerance old', token({ claims: { iat: N - TTL - TOLERANCE } })),
  accepted('iat fractional', token({ claims: { iat: N - 0.5 } })),
  accepted('a payload with a UTF-8 byte-order mark (skipped by both decoders)', token({ payloadSegment: b64(`\uFEFF${JSON.stringify(CLAIMS)}`) })),
  accepted('a header with a UTF-8 byte-order mark', token({ headerSegment: b64(`\uFEFF${JSON.stringify(HEADER)}`) })),
  accepted('non-ASCII claim values', token({ claims: { name: 'Zoë 🦊' } })),
  accepted('a token of exactly 8192 characters', tokenOfLength(8192)),

  // The algorithm: RS256 and nothing else.
  refused('alg none, no signature', token({ header: { alg: 'none' }, signer: () => '' }), 'header'),
  refused('alg none with a genuine signature', token({ header: { alg: 'none' } }), 'header'),
  refused('alg HS256 keyed with the public key PEM', token({ header: { alg: 'HS256' }, signer: hs256WithPublicKey }), 'header'),
  refused('alg RS384', token({ header: { alg: 'RS384' }, signer: rs384 }), 'header'),
  refused('alg PS256', token({ header: { alg: 'PS256' }, signer: ps256 }), 'header'),
  refused('alg rs256', token({ header: { alg: 'rs256' } }), 'header'),
  refused('alg missing', token({ header: { alg: undefined } }), 'header'),
  refused('alg an array', token({ header: { alg: ['RS256'] } }), 'header'),
  refused('alg RS256 over a PSS signature', token({ signer: ps256 }), 'signature'),

  // typ
  refused('typ missing', token({ header: { typ: undefined } }), 'header'),
  refused('typ JWT', token({ header: { typ: 'JWT' } }), 'header'),
  refused('typ application/jwt', token({ header: { typ: 'application/jwt' } }), 'header'),
  refused('typ x/at+jwt', token({ header: { typ: 'x/at+jwt' } }), 'header'),
  refused('typ with a trailing space', token({ header: { typ: 'at+jwt ' } }), 'header'),
  refused('typ with parameters', token({ header: { typ: 'application/at+jwt; charset=utf-8' } }), 'header'),
  refused('typ a number', token({ header: { typ: 42 } }), 'header'),

  // crit and b64 (those jose refuses too)
  refused('crit naming an unknown extension', token({ header: { crit: ['exp'], exp: N + 60 } }), 'header'),
  refused('crit empty', token({ header: { crit: [] } }), 'header'),
  refused('crit not an array', token({ header: { crit: 'b64', b64: true } }), 'header'),
  refused('crit b64 with b64 false', token({ header: { crit: ['b64'], b64: false } }), 'header'),

  // kid: only Tessera's own public RSA keys of 2048 bits or more
  refused('kid unknown', token({ header: { kid: 'kZ' } }), 'key'),
  refused('kid missing', token({ header: { kid: undefined } }), 'key'),
  refused('kid a number', token({ header: { kid: 42 } }), 'key'),
  refused('kid null', token({ header: { kid: null } }), 'key'),
  refused('kid __proto__', token({ header: { kid: '__proto__' } }), 'key'),
  refused('kid of a 1024-bit key of the set', token({ header: { kid: 'kSmall' }, signer: rs256(small.privateKey) }), 'key'),
  refused('kid of an EC key of the set', token({ header: { kid: 'kEc' }, signer: es256 }), 'key'),
  refused('kid of a private key', token({ header: { kid: 'kPrivate' } }), 'key'),
  refused('signed by a key not in the set, under kid kA', token({ signer: rs256(stranger.privateKey) }), 'signature'),
  refused('signed by another key of the set', token({ signer: rs256(keyB.privateKey) }), 'signature'),
  refused('signed by a stranger whose key rides in jwk', token({ header: { jwk: stranger.publicKey.export({ format: 'jwk' }) }, signer: rs256(stranger.privateKey) }), 'signature'),

  // The compact serialization and its base64url (those jose refuses too)
  refused('two segments', `${genuineHeader}.${genuinePayload}`, 'malformed'),
  refused('four segments', `${genuine}.${genuineSignature}`, 'malformed'),
  refused('an empty header segment', token({ headerSegment: '' }), 'malformed'),
  refused('an empty payload segment', token({ payloadSegment: '' }), 'malformed'),
  refused('an empty signature', `${genuineHeader}.${genuinePayload}.`, 'malformed'),
  refused('the empty string', '', 'malformed'),
  refused('+ and / for - and _ in the signature', withSignature(tokenWithUrlSafeCharacters(), (s) => s.replaceAll('-', '+').replaceAll('_', '/')), 'malformed'),
  refused('+ and / in the header segment', token({ headerSegment: json({ ...HEADER, x: '>>>???' }).replaceAll('-', '+').replaceAll('_', '/') }), 'malformed'),
  refused('a signature one character longer (a byte more)', `${genuine}A`, 'signature'),
  refused('a signature of a length no base64url has (4n + 1)', `${genuine}AAA`, 'malformed'),
  refused('a non-ASCII character in the payload segment', token({ payloadSegment: `${genuinePayload}é` }), 'malformed'),
  refused('a signature with an extra leading zero byte', withSignature(genuine, (s) => b64(Buffer.concat([Buffer.alloc(1), Buffer.from(s, 'base64url')]))), 'signature'),
  refused('a signature with its leading zero byte dropped', withSignature(tokenWithLeadingZeroSignature(), (s) => b64(Buffer.from(s, 'base64url').subarray(1))), 'signature'),

  // The header and the payload must be JSON objects
  refused('a header that is an array', token({ headerSegment: json([HEADER]) }), 'malformed'),
  refused('a header that is not JSON', token({ headerSegment: b64('{"alg":"RS256"') }), 'malformed'),
  refused('a payload that is an array', token({ payloadSegment: json([CLAIMS]) }), 'malformed'),
  refused('a payload that is a string', token({ payloadSegment: json('claims') }), 'malformed'),
  refused('a payload that is a number', token({ payloadSegment: json(1) }), 'malformed'),
  refused('a payload that is null', token({ payloadSegment: json(null) }), 'malformed'),
  refused('a payload that is not JSON', token({ payloadSegment: b64('{"iss":') }), 'malformed'),
  refused('a payload that is not UTF-8', token({ payloadSegment: b64(Buffer.from(JSON.stringify(CLAIMS).replace('user-1', 'user-\u00ff'), 'latin1')) }), 'malformed'),
  refused('a tampered payload', `${genuineHeader}.${json({ ...CLAIMS, sub: 'admin' })}.${genuineSignature}`, 'signature'),
  refused('a tampered header', `${json({ ...HEADER, x: 1 })}.${genuinePayload}.${genuineSignature}`, 'signature'),

  // iss and aud
  refused('iss missing', token({ claims: { iss: undefined } }), 'claims'),
  refused('iss another issuer', token({ claims: { iss: 'https://evil.test' } }), 'claims'),
  refused('iss with a trailing slash', token({ claims: { iss: `${ISSUER}/` } }), 'claims'),
  refused('iss an array holding the issuer', token({ claims: { iss: [ISSUER] } }), 'claims'),
  refused('aud missing', token({ claims: { aud: undefined } }), 'claims'),
  refused('aud another string', token({ claims: { aud: CLIENT_AUDIENCE } }), 'claims'),
  refused('aud a string extending the audience', token({ claims: { aud: `${AUDIENCE}/x` } }), 'claims'),
  refused('aud an array without the audience', token({ claims: { aud: [CLIENT_AUDIENCE] } }), 'claims'),
  refused('aud an empty array', token({ claims: { aud: [] } }), 'claims'),
  refused('aud a number', token({ claims: { aud: 42 } }), 'claims'),
  refused('aud an object', token({ claims: { aud: { 0: AUDIENCE } } }), 'claims'),

  // The required claims
  refused('sub missing', token({ claims: { sub: undefined } }), 'claims'),
  refused('jti missing', token({ claims: { jti: undefined } }), 'claims'),
  refused('client_id missing', token({ claims: { client_id: undefined } }), 'claims'),
  refused('exp missing', token({ claims: { exp: undefined } }), 'claims'),
  refused('iat missing', token({ claims: { iat: undefined } }), 'claims'),
  malformedClaims('client_id a number', token({ claims: { client_id: 42 } })),
  malformedClaims('scope missing', token({ claims: { scope: undefined } })),
  malformedClaims('scope an array', token({ claims: { scope: ['orders:read'] } })),

  // exp
  refused('exp a string', token({ claims: { exp: String(N + 60) } }), 'claims'),
  refused('exp null', token({ claims: { exp: null } }), 'claims'),
  refused('exp exactly the tolerance past', token({ claims: { exp: N - TOLERANCE } }), 'expired'),
  refused('exp 5.001 s past', token({ claims: { exp: N - 5.001 } }), 'expired'),
  refused('exp an hour past', token({ claims: { exp: N - 3600 } }), 'expired'),
  refused('exp negative', token({ claims: { exp: -1 } }), 'expired'),
  refused('exp -1e400 (-Infinity)', token({ payloadSegment: rawClaim('exp', '-1e400') }), 'expired'),

  // iat and the token's age
  refused('iat a string', token({ claims: { iat: String(N) } }), 'claims'),
  refused('iat 6 s ahead', token({ claims: { iat: N + 6 } }), 'claims'),
  refused('iat 5.5 s ahead', token({ claims: { iat: N + 5.5 } }), 'claims'),
  refused('iat 1e400 (Infinity)', token({ payloadSegment: rawClaim('iat', '1e400') }), 'claims'),
  refused('iat one second older than TTL + tolerance', token({ claims: { iat: N - TTL - TOLERANCE - 1 } }), 'expired'),
  refused('iat half a second older than TTL + tolerance', token({ claims: { iat: N - TTL - TOLERANCE - 0.5 } }), 'expired'),
  refused('iat negative', token({ claims: { iat: -1 } }), 'expired'),
  refused('iat -1e400 (-Infinity)', token({ payloadSegment: rawClaim('iat', '-1e400') }), 'expired'),

  // nbf
  refused('nbf 6 s ahead', token({ claims: { nbf: N + 6 } }), 'claims'),
  refused('nbf a string', token({ claims: { nbf: String(N) } }), 'claims'),
  refused('nbf null', token({ claims: { nbf: null } }), 'claims'),

  // Which refusal wins when several apply (jose's order decides between expired and not valid)
  refused('expired, and typ wrong', token({ header: { typ: 'JWT' }, claims: { exp: N - 60 } }), 'header'),
  refused('expired, and aud wrong', token({ claims: { exp: N - 60, aud: CLIENT_AUDIENCE } }), 'claims'),
  refused('expired, and nbf ahead', token({ claims: { exp: N - 60, nbf: N + 60 } }), 'claims'),
  refused('expired, and iat a string', token({ claims: { exp: N - 60, iat: 'yesterday' } }), 'claims'),
  refused('expired, and iat ahead', token({ claims: { exp: N - 60, iat: N + 60 } }), 'expired'),
  refused('too old, and exp ahead', token({ claims: { iat: N - 3600, exp: N + 60 } }), 'expired'),
  refused('expired, and signed by a stranger', token({ claims: { exp: N - 60 }, signer: rs256(stranger.privateKey) }), 'signature'),

  // Size
  { what: 'a token of 8193 characters', token: tokenOfLength(8193), expected: TOO_LONG },
];

/**
 * Tokens jose takes and Tessera refuses: Tessera never signs them, and each is one more spelling
 * of a token (RFC 8725 §3.11 asks for one), or an extension Tessera does not implement.
 */
const STRICTER: readonly Case[] = [
  refused('crit b64 with b64 true', token({ header: { crit: ['b64'], b64: true } }), 'header'),
  refused('b64 false without crit (jose ignores it)', token({ header: { b64: false } }), 'header'),
  refused('b64 true without crit', token({ header: { b64: true } }), 'header'),
  refused('a padded signature', withSignature(genuine, (s) => `${s}${'='.repeat((4 - (s.length % 4)) % 4)}`), 'malformed'),
  refused('a padded header segment, signed so', token({ headerSegment: Buffer.from(JSON.stringify(HEADER)).toString('base64').replaceAll('+', '-').replaceAll('/', '_') }), 'malformed'),
  refused('a newline inside the signature', withSignature(genuine, (s) => `${s.slice(0, 100)}\n${s.slice(100)}`), 'malformed'),
  refused('non-zero trailing bits in the signature', withSignature(genuine, (s) => `${s.slice(0, -1)}${String.fromCharCode(s.charCodeAt(s.length - 1) + 1)}`), 'malformed'),
];

describe('verifyAccessToken on node:crypto', () => {
  it('the corpus is what it claims to be', () => {
    expect(genuine.length).toBeLessThan(8192);
    expect(STRICTER[3]!.token.endsWith('=')).toBe(true);
    expect(STRICTER[4]!.token.split('.')[0]!.endsWith('=')).toBe(true);
    // 256 bytes make 342 characters, 4 bits to spare: the last character's low bits are 0, so +1 changes only them.
    const last = genuineSignature.at(-1)!;
    expect(Buffer.from(genuineSignature, 'base64url')).toHaveLength(256);
    expect('AQgw'.includes(last)).toBe(true);
  });

  it.each(CORPUS.map((c) => [c.what, c] as const))('agrees with jose: %s', async (_what, c) => {
    const [ours, theirs] = await Promise.all([tessera(c.token, c.audience), jose(c.token, c.audience)]);
    expect(ours).toEqual(theirs);
    if (c.expected === 'accepted') {
      expect(ours).toEqual({ accepted: JSON.parse(Buffer.from(segments(c.token)[1], 'base64url').toString('utf8').replace(/^\uFEFF/, '')) });
    } else {
      expect(ours).toEqual({ refused: c.expected });
    }
    if (c.failure !== undefined || c.expected === 'accepted' || c.expected === MALFORMED) {
      expect(failureOf(c.token, c.audience)).toBe(c.failure);
    }
  });

  it.each(STRICTER.map((c) => [c.what, c] as const))('refuses what jose takes: %s', async (_what, c) => {
    expect(await jose(c.token)).toEqual({ accepted: CLAIMS });
    expect(await tessera(c.token)).toEqual({ refused: NOT_VALID });
    expect(failureOf(c.token)).toBe(c.failure);
  });

  it('verifies synchronously, and refuses on invalid options rather than letting NaN through', () => {
    const options = {
      keys: publicKeys,
      typ: 'at+jwt',
      issuer: ISSUER,
      audience: AUDIENCE,
      requiredClaims: ['exp'],
      clockTolerance: TOLERANCE,
      maxTokenAge: TTL,
      now: N,
    };
    expect(verifyJwt(genuine, options)).toEqual(CLAIMS);
    const expired = token({ claims: { exp: N - 3600 } });
    for (const bad of [{ now: Number.NaN }, { clockTolerance: -1 }, { clockTolerance: Number.NaN }, { maxTokenAge: -1 }, { maxTokenAge: Number.POSITIVE_INFINITY }]) {
      expect(() => verifyJwt(expired, { ...options, ...bad })).toThrow(expect.objectContaining({ failure: 'claims' }));
    }
  });

  it('checks the claims its caller requires, and iss, aud and iat always', () => {
    const options = { keys: publicKeys, typ: 'at+jwt', issuer: ISSUER, audience: AUDIENCE, clockTolerance: 0, maxTokenAge: TTL, now: N };
    const withoutSid = token({ claims: { sid: undefined } });
    expect(() => verifyJwt(withoutSid, { ...options, requiredClaims: ['sid'] })).toThrow(expect.objectContaining({ failure: 'claims' }));
    expect(verifyJwt(withoutSid, { ...options, requiredClaims: [] })).toMatchObject({ sub: 'user-1' });
    // A maximum age needs an iat, required or not; iss and aud are checked by value.
    for (const claims of [{ iat: undefined }, { iss: undefined }, { aud: undefined }]) {
      expect(() => verifyJwt(token({ claims }), { ...options, requiredClaims: [] })).toThrow(expect.objectContaining({ failure: 'claims' }));
    }
    // A maximum age of 0: only a token issued this very second (give or take the tolerance).
    expect(verifyJwt(token({ claims: { iat: N } }), { ...options, requiredClaims: [], maxTokenAge: 0 })).toMatchObject({ iat: N });
    expect(() => verifyJwt(token({ claims: { iat: N - 1 } }), { ...options, requiredClaims: [], maxTokenAge: 0 })).toThrow(expect.objectContaining({ failure: 'expired' }));
    // With no tolerance, the edges move by 5 s.
    expect(() => verifyJwt(token({ claims: { exp: N } }), { ...options, requiredClaims: [] })).toThrow(expect.objectContaining({ failure: 'expired' }));
    expect(() => verifyJwt(token({ claims: { iat: N + 1 } }), { ...options, requiredClaims: [] })).toThrow(expect.objectContaining({ failure: 'claims' }));
    expect(() => verifyJwt(token({ claims: { nbf: N + 1 } }), { ...options, requiredClaims: [] })).toThrow(expect.objectContaining({ failure: 'claims' }));
  });

  it('keeps verifying with a key rebuilt from its JWK, as loadKeySet builds them', () => {
    const fromJwk = createPublicKey({ key: keyA.publicKey.export({ format: 'jwk' }), format: 'jwk' });
    const value = token({ header: { kid: 'jwk' } });
    expect(verifyJwt(value, { keys: new Map([['jwk', fromJwk]]), typ: 'at+jwt', issuer: ISSUER, audience: AUDIENCE, requiredClaims: [], clockTolerance: 5, maxTokenAge: TTL, now: N })).toEqual(CLAIMS);
  });
});
