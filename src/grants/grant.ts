import type { Deps } from '../deps.js';
import type { Client, GrantType } from '../db/schema.js';

/** RFC 6749 §5.1: the successful token response. */
export interface TokenResponse {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
  readonly refresh_token?: string;
  /** OpenID Connect Core §3.1.3.3: with the `openid` scope, at the authorization code grant. */
  readonly id_token?: string;
}

/** What a grant sees of a request: plain values, never Express objects. */
export interface TokenRequest {
  /** The body parameters, each present at most once (the token endpoint guarantees it). */
  readonly params: Readonly<Record<string, string | undefined>>;
  readonly client: Client;
  /** The real client address, as TRUST_PROXY resolves it. */
  readonly ip: string;
  /** The request's X-Request-Id (src/http/request-log.ts), for the audit log. */
  readonly requestId?: string | undefined;
}

/** One grant type: one module of this shape, one entry in the map of src/grants/index.ts. */
export interface Grant {
  readonly grantType: GrantType;
  handle(request: TokenRequest, deps: Deps): Promise<TokenResponse>;
}
