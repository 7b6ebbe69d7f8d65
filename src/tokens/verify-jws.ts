import { type KeyObject, verify } from 'node:crypto';

/**
 * Verification of the JWTs Tessera signs itself, synchronously with node:crypto. jose's jwtVerify
 * goes through WebCrypto, whose promises, buffers and thread-pool hop cost several times the
 * RS256 verification itself; the checks here are the ones verifyAccessToken asked jose for, with
 * jose's semantics (node_modules/jose/dist/webapi/lib/jwt_claims_set.js), and src/tokens/
 * verify-jws.test.ts holds the two to the same answers. Where this is stricter than jose (one
 * base64url spelling per token; no `crit`, no `b64`), it refuses only what Tessera never signs.
 */

/** Why a token was refused; only `expired` is told apart to the client. */
export type JwtFailure = 'malformed' | 'header' | 'key' | 'signature' | 'claims' | 'expired';

/** Carries only the kind of failure: verifyAccessToken tells the client no more, and logs nothing of it. */
export class JwtVerificationError extends Error {
  constructor(readonly failure: JwtFailure) {
    super(failure);
  }
}

export interface JwtVerifyOptions {
  /** Tessera's public keys by kid: the only keys a token can name (never jku, x5u or jwk). */
  readonly keys: ReadonlyMap<string, KeyObject>;
  /** The expected `typ` header, compared as jose does (case-insensitive, `application/` optional). */
  readonly typ: string;
  readonly issuer: string;
  /** `aud` must be this string or an array holding it. */
  readonly audience: string;
  /** Claims that must be present (whatever their value); `iss`, `aud` and `iat` always are. */
  readonly requiredClaims: readonly string[];
  readonly clockTolerance: number;
  /** Seconds an `iat` may lie in the past (plus the tolerance). */
  readonly maxTokenAge: number;
  /** Seconds since the epoch. */
  readonly now: number;
}

/** The only algorithm: RFC 8725 §3.1, a verifier knows the one it expects (never `none`, never HS*). */
const ALGORITHM = 'RS256';
/** jose refuses RSA keys under 2048 bits for RS256 (RFC 7518 §3.3); so does this. */
const MIN_RSA_MODULUS_BITS = 2048;
/** As jose: invalid UTF-8 is an error, not U+FFFD (a leading BOM is skipped, as jose's decoder does). */
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Verifies an RS256 JWS compact serialization and the JWT claims in it; returns the claims. */
export function verifyJwt(token: string, options: JwtVerifyOptions): Record<string, unknown> {
  const claims = verifyJws(token, options);
  checkClaims(claims, options);
  return claims;
}

/** RFC 7515 §5.2 for the compact serialization (§7.1) and RS256 only; the payload must be a JSON object. */
function verifyJws(token: string, options: Pick<JwtVerifyOptions, 'keys' | 'typ'>): Record<string, unknown> {
  const segments = token.split('.');
  if (segments.length !== 3) throw new JwtVerificationError('malformed');
  const [encodedHeader, encodedPayload, encodedSignature] = segments as [string, string, string];
  const header = parseJsonObject(decodeSegment(encodedHeader));
  // RFC 7515 §4.1.11: an extension a verifier does not know must be refused. Tessera knows none
  // (RFC 7797's b64 either, so `b64` alone is refused too: it would change what the signature covers).
  if (Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) throw new JwtVerificationError('header');
  if (header['alg'] !== ALGORITHM) throw new JwtVerificationError('header');
  if (typeof header['typ'] !== 'string' || normalizeTyp(header['typ']) !== normalizeTyp(options.typ)) {
    throw new JwtVerificationError('header');
  }
  // The map's keys are strings: a kid of any other type (or none) finds nothing.
  const key = options.keys.get(header['kid'] as string);
  if (key === undefined) throw new JwtVerificationError('key');
  // crypto.verify takes its padding from the key: PKCS#1 v1.5, RS256, only for a plain RSA key.
  // Public, as jose wants it (Tessera's set holds only public keys). An RSA key has a modulus length.
  if (key.type !== 'public' || key.asymmetricKeyType !== 'rsa' || key.asymmetricKeyDetails!.modulusLength! < MIN_RSA_MODULUS_BITS) {
    throw new JwtVerificationError('key');
  }
  const signature = decodeSegment(encodedSignature);
  const payload = decodeSegment(encodedPayload);
  // RFC 7515 §5.2 step 8: the signing input is the two segments as sent (all ASCII by now).
  const signingInput = Buffer.from(`${encodedHeader}.${encodedPayload}`);
  // For an RSA key, a signature of any length or content is false here, never an exception.
  if (!verify('sha256', signingInput, key, signature)) throw new JwtVerificationError('signature');
  return parseJsonObject(payload);
}

/**
 * jose's validateClaimsSet for these options, in its order (which decides when a token that fails
 * several checks is `expired`): the required claims present, iss, aud, then iat, nbf and exp must
 * be numbers (any number, as jose: fractions, negatives, 1e400 that is Infinity), nbf, exp, and
 * the token's age, past and future.
 */
function checkClaims(claims: Record<string, unknown>, options: JwtVerifyOptions): void {
  const { now, clockTolerance: tolerance, maxTokenAge } = options;
  // jose throws a TypeError on these; unchecked, a NaN would make every comparison below pass.
  if (!Number.isFinite(now) || !Number.isFinite(tolerance) || tolerance < 0 || !Number.isFinite(maxTokenAge) || maxTokenAge < 0) {
    throw new JwtVerificationError('claims');
  }
  // jose also lists iss and aud here: a missing one fails their checks below all the same.
  for (const name of options.requiredClaims) {
    if (!Object.hasOwn(claims, name)) throw new JwtVerificationError('claims');
  }
  if (claims['iss'] !== options.issuer) throw new JwtVerificationError('claims');
  const aud = claims['aud'];
  if (!(typeof aud === 'string' ? aud === options.audience : Array.isArray(aud) && aud.includes(options.audience))) {
    throw new JwtVerificationError('claims');
  }
  // A maximum age makes iat required.
  const iat = claims['iat'];
  if (typeof iat !== 'number') throw new JwtVerificationError('claims');
  // An absent nbf or exp sets no bound.
  const nbf = optionalNumericDate(claims['nbf']) ?? Number.NEGATIVE_INFINITY;
  if (nbf > now + tolerance) throw new JwtVerificationError('claims');
  const exp = optionalNumericDate(claims['exp']) ?? Number.POSITIVE_INFINITY;
  if (exp <= now - tolerance) throw new JwtVerificationError('expired');
  const age = now - iat;
  if (age - tolerance > maxTokenAge) throw new JwtVerificationError('expired');
  if (age < -tolerance) throw new JwtVerificationError('claims');
}

/** A NumericDate claim (RFC 7519 §2): absent, or a JSON number. */
function optionalNumericDate(value: unknown): number | undefined {
  if (value !== undefined && typeof value !== 'number') throw new JwtVerificationError('claims');
  return value;
}

/**
 * RFC 7515 §2: base64url without padding. Buffer's decoder is lenient (it skips characters outside
 * the alphabet, takes `+` and `/`, padding and non-zero trailing bits), so a segment counts only if
 * it is exactly what its bytes encode to: one spelling per token, nothing smuggled beside it.
 */
function decodeSegment(segment: string): Buffer {
  const bytes = Buffer.from(segment, 'base64url');
  if (bytes.length === 0 || bytes.toString('base64url') !== segment) throw new JwtVerificationError('malformed');
  return bytes;
}

function parseJsonObject(bytes: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    // Not UTF-8, or not JSON: undefined, which the check below refuses.
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JwtVerificationError('malformed');
  return value as Record<string, unknown>;
}

/** jose's normalisation: RFC 7515 §4.1.9 lets `typ` omit `application/`, and media types ignore case. */
function normalizeTyp(value: string): string {
  const lower = value.toLowerCase();
  return value.includes('/') ? lower : `application/${lower}`;
}
