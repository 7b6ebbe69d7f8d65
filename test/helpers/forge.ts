import { type KeyObject, sign } from 'node:crypto';
import { type CryptoKey, type JWTPayload, SignJWT } from 'jose';

/** Tokens built by hand for the forged-token tests (userinfo, the verifier). */

export const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export interface ForgeOptions {
  readonly header?: Record<string, unknown>;
  readonly claims?: Record<string, unknown>;
  readonly key?: KeyObject | CryptoKey | Uint8Array;
}

/** Signs with jose; by default exactly like Tessera (the genuine key, RS256, at+jwt, its kid). */
export async function forgeJwt(genuine: { kid: string; privateKey: KeyObject }, claims: JWTPayload, options: ForgeOptions = {}): Promise<string> {
  const header = { alg: 'RS256', typ: 'at+jwt', kid: genuine.kid, ...options.header };
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(options.key ?? genuine.privateKey);
}

/** Signs bytes by hand with node:crypto (RSA-SHA256), for headers jose would refuse to produce. */
export function signRawJwt(header: Record<string, unknown>, claims: JWTPayload, privateKey: KeyObject): string {
  const input = `${b64url(header)}.${b64url(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}
