import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { AuthorizeError, redirectTo } from '../../signin/authorization-request.js';
import { toOAuthError } from '../errors.js';
import { sendMessagePage, sendRedirect } from './pages.js';

/**
 * Errors of the browser endpoints. An AuthorizeError goes back to the client's (checked) redirect
 * URI with `error`, `error_description`, `state` as given and `iss` (RFC 6749 §4.1.2.1, RFC 9207);
 * anything else is an HTML page with the status an API would answer, never a redirect, so that a
 * bad client_id or redirect_uri cannot turn Tessera into an open redirector (RFC 9700 §4.11).
 */
export function htmlErrors(log: Logger, issuer: string): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    if (res.headersSent) return;
    if (error instanceof AuthorizeError) {
      res.locals['oauthError'] = error.code;
      const target = redirectTo(error.redirectUri, {
        error: error.code,
        error_description: error.description,
        state: error.state,
        iss: issuer,
      });
      sendRedirect(res, req.method === 'POST' ? 303 : 302, target);
      return;
    }
    const oauth = toOAuthError(log, error, res);
    res.locals['oauthError'] = oauth.code;
    const title = oauth.status === 429 ? 'Too many attempts' : oauth.status >= 500 ? 'Service unavailable' : 'Sign-in cannot continue';
    sendMessagePage(res, oauth.status, title, sentence(oauth.description), oauth.headers);
  };
}

/** An RFC 6749 description as a sentence for a person. */
export function sentence(description: string): string {
  const text = description.charAt(0).toUpperCase() + description.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}
