import { isIP } from 'node:net';
import { isLoopbackHost } from './auth/redirect-uris.js';
import { parseAddress } from './mail/address.js';

/** Express's trust-proxy setting: `false`, a hop count, or a list of addresses/CIDRs. Never `true`. */
export type TrustProxy = false | number | readonly string[];

// Checks of single configuration values, for src/config.ts: each returns what is wrong, never throws.

const TRUST_PROXY_PRESETS = new Set(['loopback', 'linklocal', 'uniquelocal']);

export function checkIssuer(issuer: string): string[] {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return [`ISSUER must be an absolute http(s) URL (got "${issuer}")`];
  }
  // RFC 8414 §2: the issuer has no query or fragment. A trailing slash would make `iss` checks
  // in verifiers depend on string details, so Tessera refuses it rather than guessing.
  if (!['http:', 'https:'].includes(url.protocol) || url.search || url.hash || /[?#]/.test(issuer)) {
    return [`ISSUER must be an http(s) URL without query or fragment (got "${issuer}")`];
  }
  if (issuer.endsWith('/')) return [`ISSUER must not end with "/" (got "${issuer}")`];
  return [];
}

export function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return ['http:', 'https:'].includes(url.protocol) && url.origin === text;
  } catch {
    return false;
  }
}

/** `TRUST_PROXY`: `false`, a hop count, or addresses/CIDRs. `true` would let any client pick its own IP. */
export function parseTrustProxy(text: string | undefined, problems: string[]): TrustProxy {
  if (text === undefined || text === 'false' || text === '0') return false;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops >= 1 && hops <= 10) return hops;
  }
  if (text === 'true') {
    problems.push('TRUST_PROXY=true is refused: it trusts any X-Forwarded-For; give a hop count or a CIDR list');
    return false;
  }
  const entries = text.split(',').map((entry) => entry.trim());
  const bad = entries.filter((entry) => !TRUST_PROXY_PRESETS.has(entry) && !isCidr(entry));
  if (bad.length > 0) {
    problems.push(
      `TRUST_PROXY must be false, a hop count from 1 to 10, or a list of IP addresses/CIDRs (bad: ${bad.join(', ')})`,
    );
    return false;
  }
  return entries;
}

function isCidr(text: string): boolean {
  const [address = '', prefix, ...rest] = text.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : -1;
  return bits >= 0 && bits <= (family === 4 ? 32 : 128);
}

/**
 * SMTP_URL, MAIL_FROM and PASSWORD_RESET_URL: all three set (password reset by email is on), or
 * none. A bad value is named without its own text where that may hold a password (SMTP_URL).
 */
export function readPasswordReset(
  env: { SMTP_URL: string | undefined; MAIL_FROM: string | undefined; PASSWORD_RESET_URL: string | undefined },
  problems: string[],
): { smtpUrl: string; mailFrom: string; resetUrl: string } | undefined {
  const set = Object.entries(env).filter(([, value]) => value !== undefined);
  if (set.length === 0) return undefined;
  if (set.length < 3) {
    problems.push('SMTP_URL, MAIL_FROM and PASSWORD_RESET_URL must be set together (password reset by email), or none of them');
    return undefined;
  }
  const { SMTP_URL: smtpUrl = '', MAIL_FROM: mailFrom = '', PASSWORD_RESET_URL: resetUrl = '' } = env;
  const before = problems.length;
  const smtp = parseUrl(smtpUrl);
  if (smtp === undefined || !['smtp:', 'smtps:'].includes(smtp.protocol) || smtp.hostname === '') {
    problems.push('SMTP_URL must be an smtp:// or smtps:// URL such as smtps://user:password@mail.example.com:465');
  } else if (smtp.search !== '') {
    // nodemailer reads a query string as transport options over Tessera's own (logger=true would log the reset link).
    problems.push('SMTP_URL must not have a query string: only smtp(s)://user:password@host:port is read');
  }
  if (parseAddress(mailFrom) === undefined) {
    problems.push(`MAIL_FROM must be an email address or "Name <address>" (got "${mailFrom}")`);
  }
  // The link sets the password of whoever follows it: https, or http only on this machine (as redirect URIs, RFC 9700 §2.6).
  const reset = parseUrl(resetUrl);
  const secure = reset?.protocol === 'https:' || (reset?.protocol === 'http:' && isLoopbackHost(reset.hostname));
  if (reset === undefined || !secure || reset.hash !== '' || reset.searchParams.has('token')) {
    problems.push(
      'PASSWORD_RESET_URL must be an https URL (http only on a loopback host: 127.0.0.1, [::1], localhost) without a fragment or a token parameter: ' +
        `the mail adds ?token=... (got "${resetUrl}")`,
    );
  }
  return problems.length === before ? { smtpUrl, mailFrom, resetUrl } : undefined;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
