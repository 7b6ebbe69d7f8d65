import { type Request, type Response, Router } from 'express';
import type { Client } from '../../db/schema.js';
import { findBrowserSessionById } from '../../db/browser-sessions.js';
import type { Deps } from '../../deps.js';
import { isValidClientId } from '../../oauth/client-auth.js';
import { invalidRequest } from '../../oauth/errors.js';
import { MAX_STATE_LENGTH, redirectTo } from '../../signin/authorization-request.js';
import { endBrowserSession, findBrowserSession } from '../../signin/browser-sessions.js';
import { csrfTokenFor, generateOpaqueSecret, isCsrfTokenOf, isWellFormedOpaqueSecret } from '../../signin/secrets.js';
import { readIdTokenHint, type IdTokenHint } from '../../tokens/id-token.js';
import { methodNotAllowed } from '../errors.js';
import { parseForm } from '../form.js';
import { CSRF_PURPOSE } from './authorize.js';
import { clearSessionCookie, readCookie, setCsrfCookie, signInCookies } from './cookies.js';
import { htmlErrors } from './html-errors.js';
import { hiddenFields, LOGOUT_ACTION, sendMessagePage, sendPage, sendRedirect } from './pages.js';

interface LogoutRequest {
  readonly hint: IdTokenHint | undefined;
  readonly client: Client | undefined;
  /** Registered for `client`, or undefined: the signed-out page is shown instead. */
  readonly postLogoutRedirectUri: string | undefined;
  readonly state: string | undefined;
}

/**
 * GET /logout, the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0). With a valid
 * `id_token_hint` of this browser's current session the relying party has shown it speaks for
 * this session: it ends at once. Without one, or with an ID token of another (or an ended)
 * session, anyone could link a browser here, so the user is asked first (§2: the OP "MUST ask
 * the End-User" then), on a page whose form (POST /logout) carries a CSRF token. Ending a session
 * ends every refresh family its codes started. The browser is sent to `post_logout_redirect_uri`
 * only if that exact URI is registered for the client the hint (or `client_id`) names; otherwise
 * a page says the user is signed out. Never an open redirect.
 */
export function logoutRouter(deps: Deps): Router {
  // Strict: the confirmation page's form posts to a relative `logout` (pages.ts, LOGOUT_ACTION).
  const router = Router({ strict: true });
  const cookies = signInCookies(deps.config);
  const csrfKeys = deps.keyRing.derive(CSRF_PURPOSE);

  const readRequest = async (input: Readonly<Record<string, unknown>>): Promise<LogoutRequest> => {
    for (const [name, value] of Object.entries(input)) if (typeof value !== 'string') throw invalidRequest(`the parameter ${name.slice(0, 40)} is repeated`);
    const text = (name: string) => (typeof input[name] === 'string' && input[name] !== '' ? (input[name] as string) : undefined);
    const hintText = text('id_token_hint');
    const hint = hintText === undefined ? undefined : await readIdTokenHint(deps, hintText);
    if (hintText !== undefined && hint === undefined) throw invalidRequest('the id_token_hint is not an ID token this service issued');
    const clientId = text('client_id');
    if (hint !== undefined && clientId !== undefined && hint.clientId !== clientId) throw invalidRequest('client_id does not match the id_token_hint');
    const named = hint?.clientId ?? clientId;
    const client = named !== undefined && isValidClientId(named) ? await deps.clients.find(named) : undefined;
    if (named !== undefined && client === undefined) throw invalidRequest('there is no such client');
    const wanted = text('post_logout_redirect_uri');
    if (wanted !== undefined && client === undefined) throw invalidRequest('post_logout_redirect_uri needs an id_token_hint or a client_id');
    if (wanted !== undefined && !(client!.post_logout_redirect_uris ?? []).includes(wanted)) {
      throw invalidRequest('the post_logout_redirect_uri is not registered for this client');
    }
    const state = text('state');
    if (state !== undefined && state.length > MAX_STATE_LENGTH) throw invalidRequest(`state has at most ${MAX_STATE_LENGTH} characters`);
    return { hint, client, postLogoutRedirectUri: wanted, state };
  };

  /** Ends this browser's session (and the hint's, if it is the same user's), then says so or goes back to the client. */
  const signOut = async (req: Request, res: Response, request: LogoutRequest) => {
    const context = { reason: 'logout' as const, ip: req.ip ?? '', clientId: request.client?.id };
    const current = await findBrowserSession(deps, readCookie(req, cookies.session));
    if (current !== undefined && (request.hint === undefined || current.user_id === request.hint.sub)) await endBrowserSession(deps, current.id, context);
    if (request.hint?.sid !== undefined && request.hint.sid !== current?.id) {
      const named = await findBrowserSessionById(deps.db, request.hint.sid);
      if (named !== undefined && named.user_id === request.hint.sub && named.ended_at === null) await endBrowserSession(deps, named.id, context);
    }
    clearSessionCookie(res, cookies);
    if (request.postLogoutRedirectUri !== undefined) {
      sendRedirect(res, req.method === 'POST' ? 303 : 302, redirectTo(request.postLogoutRedirectUri, { state: request.state }));
      return;
    }
    sendMessagePage(res, 200, 'Signed out', 'You are signed out. You can close this window.');
  };

  router.get('/logout', async (req, res) => {
    const request = await readRequest(req.query);
    // At once only for a hint of this browser's own session (§2: the OP MUST ask the user if the
    // ID token does not belong to the current session); an older or another browser's ID token,
    // which a third party may hold, gets the question like a link without one. HEAD changes
    // nothing (RFC 9110 §9.2.1): it gets the page.
    const current = request.hint === undefined || req.method === 'HEAD' ? undefined : await findBrowserSession(deps, readCookie(req, cookies.session));
    if (current !== undefined && current.id === request.hint!.sid && current.user_id === request.hint!.sub) return signOut(req, res, request);
    let csrfCookie = readCookie(req, cookies.csrf);
    if (csrfCookie === undefined || !isWellFormedOpaqueSecret(csrfCookie)) {
      csrfCookie = generateOpaqueSecret();
      setCsrfCookie(res, cookies, csrfCookie);
    }
    const carried = { client_id: request.client?.id, post_logout_redirect_uri: request.postLogoutRedirectUri, state: request.state };
    sendPage(res, {
      status: 200,
      title: 'Sign out',
      formTarget: request.postLogoutRedirectUri,
      body:
        `<h1>Sign out</h1><p>Do you want to sign out of this service?</p>` +
        `<form method="post" action="${LOGOUT_ACTION}">${hiddenFields({ ...carried, csrf_token: csrfTokenFor(csrfCookie, csrfKeys) })}` +
        `<button type="submit" autofocus>Sign out</button></form>`,
    });
  });

  router.post('/logout', parseForm, async (req, res) => {
    const body = { ...((req.body ?? {}) as Record<string, unknown>) };
    const csrfField = body['csrf_token'];
    delete body['csrf_token'];
    if (!isCsrfTokenOf(typeof csrfField === 'string' ? csrfField : undefined, readCookie(req, cookies.csrf), csrfKeys)) {
      sendMessagePage(res, 403, 'Sign-out cannot continue', 'This sign-out form has expired or did not come from this site.');
      return;
    }
    await signOut(req, res, await readRequest(body));
  });
  router.all('/logout', methodNotAllowed('GET', 'HEAD', 'POST'));
  router.use('/logout', htmlErrors(deps.log, deps.config.issuer));
  return router;
}
