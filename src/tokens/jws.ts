import { type KeyObject, sign } from 'node:crypto';

/** The protected header of every JWT Tessera signs: RS256 (the only algorithm it has keys for). */
export interface JwsHeader {
  readonly alg: 'RS256';
  readonly typ: string;
  readonly kid: string;
}

/**
 * A JWT in the JWS compact serialization (RFC 7515 §7.1, RFC 7519 §7.1): the header and claims as
 * JSON, base64url without padding, signed RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
 *
 * node:crypto's callback form, not jose's SignJWT: jose 6 signs through WebCrypto, whose key
 * conversion, ArrayBuffer copies and promise cost a token about 50 µs of the main thread beyond the
 * RSA operation itself (BENCHMARKS.md, issue 17). The signature still runs on libuv's pool, off the
 * event loop. A member whose value is undefined is left out, as JSON.stringify does.
 */
export function signJwt(header: JwsHeader, claims: Readonly<Record<string, unknown>>, key: KeyObject): Promise<string> {
  const input = `${encode(header)}.${encode(claims)}`;
  return new Promise((resolve, reject) => {
    sign('sha256', Buffer.from(input, 'ascii'), key, (error, signature) => {
      if (error !== null) reject(error);
      else resolve(`${input}.${signature.toString('base64url')}`);
    });
  });
}

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}
