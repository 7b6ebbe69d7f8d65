import { createHash } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, errors as joseErrors } from 'jose';
import { epochSeconds } from '../clock.js';
import type { Deps } from '../deps.js';
import { SIGNING_ALGORITHM } from '../keys/key-store.js';
import { signJwt } from './jws.js';

export interface IdTokenSubject {
  readonly sub: string;
  /** The client: the token's only audience (OIDC Core §2). */
  readonly clientId: string;
  readonly authTime: Date;
  /** The browser session (OIDC Front-Channel Logout §2 `sid`), which RP-initiated logout ends. */
  readonly sid: string;
  readonly nonce: string | undefined;
  /** The access token issued with it, for `at_hash`. */
  readonly accessToken: string;
}

/**
 * OpenID Connect Core §2 and §3.1.3.6: an ID token signed with the same keys as access tokens
 * (RS256), with `typ` JWT so that it can never pass for an access token (at+jwt, RFC 9068 §2.1)
 * and an access token never for it. It lives as long as an access token.
 */
export async function signIdToken(deps: Pick<Deps, 'config' | 'clock' | 'keys'>, subject: IdTokenSubject): Promise<string> {
  const { kid, privateKey } = deps.keys.current().signing;
  const now = epochSeconds(deps.clock);
  const claims = {
    auth_time: Math.floor(subject.authTime.getTime() / 1000),
    sid: subject.sid,
    at_hash: atHash(subject.accessToken),
    ...(subject.nonce === undefined ? {} : { nonce: subject.nonce }),
  };
  return signJwt(
    { alg: SIGNING_ALGORITHM, typ: 'JWT', kid },
    { ...claims, iss: deps.config.issuer, sub: subject.sub, aud: subject.clientId, iat: now, exp: now + deps.config.accessTokenTtl },
    privateKey,
  );
}

/** OIDC Core §3.1.3.6: the left half of SHA-256 over the access token's ASCII, base64url (RS256). */
export function atHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest().subarray(0, 16).toString('base64url');
}

export interface IdTokenHint {
  readonly sub: string;
  readonly clientId: string;
  readonly sid: string | undefined;
}

const MAX_HINT_LENGTH = 8192;

/**
 * An `id_token_hint` at /logout (OIDC RP-Initiated Logout 1.0 §2): an ID token this service
 * signed, for one client. It may have expired ("the OP SHOULD accept ID Tokens ... even when
 * expired"), so the signature, `typ`, `iss` and `aud` are checked and `exp` is not. Undefined for
 * anything else, access tokens included.
 */
export async function readIdTokenHint(deps: Pick<Deps, 'config' | 'keys'>, token: string): Promise<IdTokenHint | undefined> {
  if (token.length > MAX_HINT_LENGTH) return undefined;
  try {
    const header = decodeProtectedHeader(token);
    if (header.alg !== SIGNING_ALGORITHM || header.typ !== 'JWT' || typeof header.kid !== 'string') return undefined;
    const key = deps.keys.current().publicKeys.get(header.kid);
    if (key === undefined) return undefined;
    const { payload } = await compactVerify(token, key, { algorithms: [SIGNING_ALGORITHM] });
    const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    if (claims['iss'] !== deps.config.issuer || typeof claims['sub'] !== 'string' || typeof claims['aud'] !== 'string') return undefined;
    return { sub: claims['sub'], clientId: claims['aud'], sid: typeof claims['sid'] === 'string' ? claims['sid'] : undefined };
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof SyntaxError || error instanceof TypeError) return undefined;
    throw error;
  }
}
