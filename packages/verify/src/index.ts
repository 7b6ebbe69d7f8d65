export { createVerifier, type TesseraAuth, type Verifier, type VerifierOptions, type VerifyOptions } from './verifier.js';
export { InsufficientScopeError, InvalidTokenError, IssuerUnavailableError, VerificationError, type VerificationErrorCode } from './errors.js';
export type { ErrorResponse, Middleware, RequestLike } from './middleware.js';
