import type { Request, Response } from 'express';
import type { Config } from '../../config.js';
import { BROWSER_SESSION_SECONDS } from '../../signin/browser-sessions.js';

/**
 * The sign-in cookies. On an https issuer their names carry the `__Host-` prefix (RFC 6265bis
 * §4.1.3.2): Secure, no Domain, Path=/, so no other host, not even a sibling subdomain, can set
 * or shadow them. HttpOnly, and SameSite=Lax: sent on the top-level navigation from a client
 * back to /authorize, never on a cross-site POST.
 */
export interface SignInCookies {
  readonly session: string;
  readonly csrf: string;
  readonly secure: boolean;
}

export function signInCookies(config: Pick<Config, 'issuer'>): SignInCookies {
  const secure = config.issuer.startsWith('https:');
  const prefix = secure ? '__Host-' : '';
  return { session: `${prefix}tessera_session`, csrf: `${prefix}tessera_csrf`, secure };
}

/** A cookie from the Cookie header; the first if it is repeated (RFC 6265 §5.4: most specific first). */
export function readCookie(req: Request, name: string): string | undefined {
  const header = req.get('cookie');
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

function cookieLine(name: string, value: string, secure: boolean, maxAgeSeconds: number | undefined): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Lax'];
  if (secure) parts.push('Secure');
  if (maxAgeSeconds !== undefined) parts.push(`Max-Age=${maxAgeSeconds}`);
  return parts.join('; ');
}

export function setSessionCookie(res: Response, cookies: SignInCookies, value: string): void {
  res.append('Set-Cookie', cookieLine(cookies.session, value, cookies.secure, BROWSER_SESSION_SECONDS));
}

export function clearSessionCookie(res: Response, cookies: SignInCookies): void {
  res.append('Set-Cookie', cookieLine(cookies.session, '', cookies.secure, 0));
}

/** The CSRF cookie lives as long as the browser does: a form may be left open for a while. */
export function setCsrfCookie(res: Response, cookies: SignInCookies, value: string): void {
  res.append('Set-Cookie', cookieLine(cookies.csrf, value, cookies.secure, undefined));
}
