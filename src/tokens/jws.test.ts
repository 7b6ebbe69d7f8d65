import { generateKeyPairSync } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { signJwt } from './jws.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });

describe('signJwt', () => {
  it('signs a compact RS256 JWS that jose verifies, header and claims as given', async () => {
    const token = await signJwt({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' }, { sub: 'ü-user', aud: ['a', 'b'], exp: 2_000_000_000, n: 1 }, privateKey);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' });
    const { payload } = await jwtVerify(token, publicKey, { algorithms: ['RS256'], typ: 'at+jwt', currentDate: new Date(1_000_000_000_000) });
    expect(payload).toEqual({ sub: 'ü-user', aud: ['a', 'b'], exp: 2_000_000_000, n: 1 });
  });

  it('leaves out members whose value is undefined', async () => {
    const token = await signJwt({ alg: 'RS256', typ: 'JWT', kid: 'k1' }, { sub: 's', sid: undefined }, privateKey);
    const { payload } = await compactVerify(token, publicKey);
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual({ sub: 's' });
  });

  it('is refused under any other key', async () => {
    const token = await signJwt({ alg: 'RS256', typ: 'JWT', kid: 'k1' }, { sub: 's' }, privateKey);
    await expect(compactVerify(token, other.publicKey)).rejects.toThrow(/signature verification failed/);
  });

  it('rejects, never throws, when the key cannot sign', async () => {
    await expect(signJwt({ alg: 'RS256', typ: 'JWT', kid: 'k1' }, { sub: 's' }, publicKey)).rejects.toThrow();
  });
});
