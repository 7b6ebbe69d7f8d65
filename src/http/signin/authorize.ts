import { type Request, type Response, Router } from 'express';
import { authenticateUser, readCredentials, SIGN_IN_FAILED } from '../../auth/user-login.js';
import type { LiveBrowserSession } from '../../db/browser-sessions.js';
import type { Deps } from '../../deps.js';
import { OAuthError } from '../../oauth/errors.js';
import { issueAuthorizationCode } from '../../signin/authorization-codes.js';
import { AUTHORIZATION_PARAMETERS, AuthorizeError, type AuthorizationRequest, readAuthorizationRequest } from '../../signin/authorization-request.js';
import { findBrowserSession, startBrowserSession } from '../../signin/browser-sessions.js';
import { csrfTokenFor, generateOpaqueSecret, isCsrfTokenOf, isWellFormedOpaqueSecret } from '../../signin/secrets.js';
import { readIdTokenHint } from '../../tokens/id-token.js';
import { methodNotAllowed } from '../errors.js';
import { parseForm } from '../form.js';
import { readCookie, setCsrfCookie, setSessionCookie, signInCookies } from './cookies.js';
import { htmlErrors, sentence } from './html-errors.js';
import { sendMessagePage, sendRedirect, sendSignInPage } from './pages.js';

/** The key the sign-in form's CSRF tokens are signed with (src/signin/secrets.ts), from KEY_ENCRYPTION_KEYS. */
export const CSRF_PURPOSE = 'sign-in csrf v1';

/**
 * GET /authorize (RFC 6749 §4.1.1) and the hosted sign-in form it shows, which posts back to
 * POST /authorize. A browser with a live session (its cookie) is sent straight back to the client
 * with a code; otherwise the page asks for a username and password, under the same brute-force
 * layers as the password grant (login_ip per source, then the account layers), and with the same
 * one message for every failure.
 */
export function authorizeRouter(deps: Deps): Router {
  // Strict: the sign-in form posts to a relative `authorize` (pages.ts, SIGN_IN_ACTION).
  const router = Router({ strict: true });
  const cookies = signInCookies(deps.config);
  const csrfKeys = deps.keyRing.derive(CSRF_PURPOSE);
  const ip = (req: Request) => req.ip ?? '';

  /** The code for `session`, or why not at the redirect URI; the browser goes there. */
  const complete = async (req: Request, request: AuthorizationRequest, session: Pick<LiveBrowserSession, 'id' | 'user_id' | 'password_changed_at' | 'auth_time'>) => {
    // Room for consent: operators register first-party clients, which skip it; a client marked
    // otherwise is refused until Tessera has a consent screen.
    if (request.client.first_party === false) {
      const code = request.prompt.has('none') ? 'consent_required' : 'access_denied';
      throw new AuthorizeError(code, 'this client needs the user to consent, which this service does not ask yet', request.redirectUri, request.state);
    }
    return issueAuthorizationCode(deps, request, session, ip(req));
  };

  /** The sign-in page, with a CSRF token tied to this browser's CSRF cookie (set now if it has none). */
  const showSignIn = (req: Request, res: Response, request: AuthorizationRequest, status: number, extra: { error?: string; username?: string; headers?: Record<string, string> } = {}) => {
    let csrfCookie = readCookie(req, cookies.csrf);
    if (csrfCookie === undefined || !isWellFormedOpaqueSecret(csrfCookie)) {
      csrfCookie = generateOpaqueSecret();
      setCsrfCookie(res, cookies, csrfCookie);
    }
    const input = (req.method === 'POST' ? req.body : req.query) as Record<string, unknown>;
    const carried = Object.fromEntries(AUTHORIZATION_PARAMETERS.map((name) => [name, typeof input[name] === 'string' ? input[name] : undefined]));
    sendSignInPage(
      res,
      status,
      {
        clientName: request.client.name || request.client.id,
        request: carried,
        csrf: csrfTokenFor(csrfCookie, csrfKeys),
        redirectUri: request.redirectUri,
        username: extra.username,
        error: extra.error,
      },
      extra.headers,
    );
  };

  /** The user an `id_token_hint` names: an ID token this service issued to this client, expired or not. */
  const readHintedUser = async (input: Record<string, unknown>, request: AuthorizationRequest): Promise<string | undefined> => {
    const text = input['id_token_hint'];
    if (text === undefined || text === '') return undefined;
    const hint = typeof text === 'string' ? await readIdTokenHint(deps, text) : undefined;
    if (hint === undefined || hint.clientId !== request.client.id) {
      throw new AuthorizeError('invalid_request', 'the id_token_hint is not an ID token this service issued to this client', request.redirectUri, request.state);
    }
    return hint.sub;
  };

  /** An authorization request (RFC 6749 §4.1.1), by GET or, as OIDC Core §3.1.2.1 asks, by a form POST. */
  const authorizationRequest = async (req: Request, res: Response) => {
    const input = (req.method === 'POST' ? req.body : req.query) as Record<string, unknown>;
    const request = await readAuthorizationRequest(deps.clients, input);
    const hintedUser = await readHintedUser(input, request);
    // HEAD changes nothing: it never issues a code.
    const found = request.prompt.has('login') || req.method === 'HEAD' ? undefined : await findBrowserSession(deps, readCookie(req, cookies.session));
    // OIDC Core §3.1.2.1: a session of another user than the id_token_hint's is no answer to this request.
    const session = hintedUser !== undefined && found?.user_id !== hintedUser ? undefined : found;
    // OIDC Core §3.1.2.1: max_age asks for a sign-in at most that old.
    const fresh = session !== undefined && (request.maxAge === undefined || deps.clock.now() - session.auth_time.getTime() <= request.maxAge * 1000);
    if (fresh) {
      sendRedirect(res, req.method === 'POST' ? 303 : 302, await complete(req, request, session));
      return;
    }
    if (request.prompt.has('none')) throw new AuthorizeError('login_required', 'the user is not signed in', request.redirectUri, request.state);
    showSignIn(req, res, request, 200);
  };

  router.get('/authorize', authorizationRequest);

  // A POST without any field of the sign-in form is an authorization request, not a sign-in (and
  // not counted by the login layers); one with a username or password but no CSRF token is a
  // sign-in, and refused below.
  router.post('/authorize', requireFormPage, parseForm, (req, _res, next) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    next(SIGN_IN_FIELDS.some((name) => body[name] !== undefined) ? undefined : 'route');
  }, ...deps.limits.signIn, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    // Before anything else: a form this browser was not shown (login CSRF) is never acted on.
    const csrfField = typeof body['csrf_token'] === 'string' ? body['csrf_token'] : undefined;
    if (!isCsrfTokenOf(csrfField, readCookie(req, cookies.csrf), csrfKeys)) {
      sendMessagePage(res, 403, 'Sign-in cannot continue', 'This sign-in form has expired or did not come from this site. Go back to the application and sign in again.');
      return;
    }
    const request = await readAuthorizationRequest(deps.clients, body);
    const username = typeof body['username'] === 'string' ? body['username'] : undefined;
    let credentials: { username: string; password: string };
    try {
      credentials = readCredentials({ username, password: typeof body['password'] === 'string' ? body['password'] : undefined });
    } catch {
      showSignIn(req, res, request, 400, { error: 'Enter your username and password.', username });
      return;
    }
    let user;
    try {
      user = await authenticateUser(deps, credentials.username, credentials.password, { ip: ip(req), clientId: request.client.id });
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      if (error.code === 'invalid_grant') return showSignIn(req, res, request, 400, { error: sentence(SIGN_IN_FAILED), username });
      if (error.status === 429) {
        return showSignIn(req, res, request, 429, { error: 'Too many attempts. Wait a moment, then try again.', username, headers: error.headers as Record<string, string> });
      }
      throw error;
    }
    const session = await startBrowserSession(deps, user, { ip: ip(req), clientId: request.client.id, previousCookie: readCookie(req, cookies.session) });
    if (session === undefined) return showSignIn(req, res, request, 400, { error: sentence(SIGN_IN_FAILED), username });
    // A new value at every sign-in (session fixation): whatever the browser held before is gone.
    setSessionCookie(res, cookies, session.cookie);
    const target = await complete(req, request, { id: session.id, user_id: user.id, password_changed_at: user.password_changed_at, auth_time: session.authTime });
    sendRedirect(res, 303, target);
  });
  router.post('/authorize', authorizationRequest);
  router.all('/authorize', methodNotAllowed('GET', 'HEAD', 'POST'));
  router.use('/authorize', htmlErrors(deps.log, deps.config.issuer));
  return router;
}

/** The fields only the sign-in form sends. */
const SIGN_IN_FIELDS = ['csrf_token', 'username', 'password'] as const;

/** The form posts application/x-www-form-urlencoded; anything else is a page, not JSON. */
function requireFormPage(req: Request, _res: Response, next: () => void): void {
  if (!req.is('application/x-www-form-urlencoded')) throw new OAuthError('invalid_request', 'the sign-in form is sent as application/x-www-form-urlencoded', { status: 415 });
  next();
}
