import { expect } from 'vitest';
import { OAuthError, type OAuthErrorCode } from '../../src/oauth/errors.js';

/**
 * For unit tests of code that throws OAuthError: runs `fn` and checks the whole error it threw,
 * the status, the headers and the body the client would get.
 */
export function expectOAuthError(fn: () => unknown, status: number, error: OAuthErrorCode, description: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (thrown) {
    caught = thrown;
  }
  expect(caught).toBeInstanceOf(OAuthError);
  const { headers, status: actual } = caught as OAuthError;
  expect({ status: actual, headers, body: (caught as OAuthError).toJSON() }).toEqual({ status, headers: {}, body: { error, error_description: description } });
}
