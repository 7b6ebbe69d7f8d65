/**
 * The three ways a verification fails, as classes a service can tell apart with `instanceof` (or
 * by `code`), each carrying the RFC 6750 §3.1 answer it calls for.
 */

export type VerificationErrorCode = 'invalid_token' | 'insufficient_scope' | 'temporarily_unavailable';

export abstract class VerificationError extends Error {
  abstract readonly status: 401 | 403 | 503;
  abstract readonly code: VerificationErrorCode;

  constructor(readonly description: string) {
    super(description);
  }
}

/** 401: the token is missing, malformed, forged, expired or meant for someone else. */
export class InvalidTokenError extends VerificationError {
  override readonly name = 'InvalidTokenError';
  readonly status = 401;
  readonly code = 'invalid_token';

  /** `missing`: no credentials at all, answered with a bare challenge (RFC 6750 §3.1). */
  constructor(
    description: string,
    readonly missing = false,
  ) {
    super(description);
  }
}

/** 403: a valid token that lacks a scope the route requires. */
export class InsufficientScopeError extends VerificationError {
  override readonly name = 'InsufficientScopeError';
  readonly status = 403;
  readonly code = 'insufficient_scope';

  constructor(readonly scopes: readonly string[]) {
    super('the access token lacks a required scope');
  }
}

/**
 * 503: the issuer's discovery document or key set could not be had (down, slow, a 5xx, a body
 * that does not parse). Not the token's fault: a client must not discard it, only retry later.
 */
export class IssuerUnavailableError extends VerificationError {
  override readonly name = 'IssuerUnavailableError';
  readonly status = 503;
  readonly code = 'temporarily_unavailable';

  constructor(readonly retryAfterSeconds: number) {
    super('the token issuer cannot be reached');
  }
}
