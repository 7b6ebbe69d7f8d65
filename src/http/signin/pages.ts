import { createHash } from 'node:crypto';
import type { Response } from 'express';

/**
 * The hosted pages: plain HTML and one inline style sheet, no script at all. Every value is
 * escaped. The Content-Security-Policy allows that style sheet by its hash and nothing else to
 * load; forms may post only to Tessera itself and (Chromium applies form-action to the redirect
 * that answers a form) the one client origin the page is about; no page may be framed
 * (clickjacking: frame-ancestors, and X-Frame-Options for older browsers).
 */
const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1b1d21}
main{max-width:24rem;margin:10vh auto;padding:2rem;background:#fff;border:1px solid #d7dae0;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 .25rem}
p{margin:.5rem 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.6rem;font:inherit;border:1px solid #8a909c;border-radius:4px}
input:focus,button:focus{outline:3px solid #1f5fbf;outline-offset:2px}
input[aria-invalid=true]{border-color:#b3261e}
button{margin-top:1.5rem;width:100%;padding:.7rem;font:inherit;font-weight:600;color:#fff;background:#1f5fbf;border:0;border-radius:4px;cursor:pointer}
.error{color:#b3261e;font-weight:600}
.client{color:#4a4f59}
`;
const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** A form-action source for the origin of `uri`: scheme, host and port, or a native app's scheme alone. */
function formActionSource(uri: string | undefined): string {
  if (uri === undefined) return '';
  const url = new URL(uri);
  // A CSP source expression cannot hold every character a custom scheme may; such a scheme is [a-z0-9+.-] (src/auth/redirect-uris.ts).
  return url.protocol === 'http:' || url.protocol === 'https:' ? ` ${url.origin}` : ` ${url.protocol}`;
}

export interface PageOptions {
  readonly status: number;
  readonly title: string;
  readonly body: string;
  /** Where a form on the page leads the browser once it is answered (a redirect URI), for form-action. */
  readonly formTarget?: string | undefined;
  readonly headers?: Readonly<Record<string, string>>;
}

export function sendPage(res: Response, page: PageOptions): void {
  res.status(page.status);
  res.set({
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': `default-src 'none'; style-src ${STYLE_HASH}; form-action 'self'${formActionSource(page.formTarget)}; frame-ancestors 'none'; base-uri 'none'`,
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
    'Referrer-Policy': 'no-referrer',
    ...page.headers,
  });
  res.send(
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
      `<title>${escapeHtml(page.title)}</title><style>${STYLE}</style></head>` +
      `<body><main>${page.body}</main></body></html>\n`,
  );
}

/** A page that tells, and leads nowhere: errors that must not be redirected, the signed-out page. */
export function sendMessagePage(res: Response, status: number, title: string, message: string, headers?: Readonly<Record<string, string>>): void {
  sendPage(res, {
    status,
    title,
    body: `<h1>${escapeHtml(title)}</h1><p${status >= 400 ? ' class="error" role="alert"' : ''}>${escapeHtml(message)}</p>`,
    ...(headers === undefined ? {} : { headers }),
  });
}

export function hiddenFields(fields: Readonly<Record<string, string | undefined>>): string {
  return Object.entries(fields)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('');
}

export interface SignInForm {
  readonly clientName: string;
  /** The authorization request, carried through the form unchanged. */
  readonly request: Readonly<Record<string, string | undefined>>;
  readonly csrf: string;
  readonly username?: string | undefined;
  readonly error?: string | undefined;
  readonly redirectUri: string;
}

/**
 * The sign-in form. Accessible without script: every input has a label (for=), the error is
 * announced (role=alert) and tied to the inputs it is about (aria-describedby, aria-invalid), and
 * focus starts on the username, or on the password once a username was given.
 */
export function sendSignInPage(res: Response, status: number, form: SignInForm, headers?: Readonly<Record<string, string>>): void {
  const error = form.error === undefined ? '' : `<p id="signin-error" class="error" role="alert">${escapeHtml(form.error)}</p>`;
  const invalid = form.error === undefined ? '' : ' aria-invalid="true" aria-describedby="signin-error"';
  const focusPassword = form.username !== undefined && form.username !== '';
  sendPage(res, {
    status,
    title: 'Sign in',
    formTarget: form.redirectUri,
    ...(headers === undefined ? {} : { headers }),
    body:
      `<h1>Sign in</h1><p class="client">to continue to ${escapeHtml(form.clientName)}</p>${error}` +
      `<form method="post" action="${SIGN_IN_ACTION}">${hiddenFields({ ...form.request, csrf_token: form.csrf })}` +
      `<label for="username">Username</label>` +
      `<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required` +
      `${focusPassword ? '' : ' autofocus'} value="${escapeHtml(form.username ?? '')}"${invalid}>` +
      `<label for="password">Password</label>` +
      `<input id="password" name="password" type="password" autocomplete="current-password" required${focusPassword ? ' autofocus' : ''}${invalid}>` +
      `<button type="submit">Sign in</button></form>`,
  });
}

/**
 * The forms post back to the page's own endpoint by a relative reference, resolved against the
 * page's URL as the browser sees it (RFC 3986 §5.2): `https://host/auth/authorize` posts to
 * `https://host/auth/authorize` behind a proxy that strips `/auth`, and `/authorize` reached
 * directly posts to `/authorize`, whatever ISSUER says. A root-relative `/authorize` would leave
 * the prefix behind. The routers are strict, so that `/authorize/` is no page whose form would
 * resolve to `/authorize/authorize`. `form-action 'self'` allows it: it is the page's origin.
 */
export const SIGN_IN_ACTION = 'authorize';
export const LOGOUT_ACTION = 'logout';

/** A redirect without a body (Express's own writes one): `Location` is all a browser needs. */
export function sendRedirect(res: Response, status: 302 | 303, location: string): void {
  res.status(status).set('Location', location).end();
}
