/**
 * The rules for a client's registered redirect URIs (RFC 6749 §3.1.2, RFC 9700 §2.1, RFC 8252 §7).
 * Each is compared byte for byte at /authorize and /logout, so what is registered is what must be sent,
 * with one exception (matchesRedirectUri): the port of an http URI on a loopback IP literal.
 *
 * - https, any host: a web application;
 * - http only on a loopback host, 127.0.0.1, [::1] or localhost (RFC 8252 §7.3, §8.3): a native
 *   app's local listener or a developer's machine; never http elsewhere (RFC 9700 §2.6);
 * - a private-use scheme named after a domain the app owns, with a period in it such as
 *   `com.example.app:/callback` (RFC 8252 §7.1): a native app; schemes without a period
 *   (`myapp:`) are refused, since any app can claim them, and so are `javascript:`, `data:` and `file:`;
 * - never a fragment (RFC 6749 §3.1.2), user information, or white space.
 */
const MAX_URIS = 20;
const MAX_URI_LENGTH = 255;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const PRIVATE_USE_SCHEME = /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+$/;
const NEVER = new Set(['javascript', 'data', 'file', 'vbscript', 'blob', 'about']);

/** The hosts where http is allowed (this machine): a URL's `hostname`, as `new URL` gives it. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname);
}

/**
 * `http://127.0.0.1` or `http://[::1]`, an optional port, then the rest (path and query) or nothing.
 * IP literals only: `localhost` may resolve elsewhere (RFC 8252 §8.3: NOT RECOMMENDED), so a
 * registered `http://localhost...` is compared byte for byte like any other URI.
 */
const LOOPBACK_IP_URI = /^(http:\/\/(?:127\.0\.0\.1|\[::1\]))(?::([1-9][0-9]{0,4}))?([/?][^#]*)?$/;

/**
 * Whether the redirect_uri of a request is `registered`: byte for byte (RFC 9700 §2.1), except that
 * an http URI on a loopback IP literal may name any port (RFC 8252 §7.3: the server "MUST allow any
 * port to be specified at the time of the request", for a native app's ephemeral listener). The
 * scheme, host, path and query are still exact; the port is the only thing that may differ.
 */
export function matchesRedirectUri(registered: string, given: string): boolean {
  if (registered === given) return true;
  const want = LOOPBACK_IP_URI.exec(registered);
  const got = LOOPBACK_IP_URI.exec(given);
  if (want === null || got === null || Number(got[2] ?? 80) > 65535) return false;
  return want[1] === got[1] && (want[3] ?? '') === (got[3] ?? '');
}

/** What is wrong with one redirect URI, or undefined. */
export function checkRedirectUri(uri: string): string | undefined {
  if (uri.length === 0 || uri.length > MAX_URI_LENGTH) return `a redirect URI has 1 to ${MAX_URI_LENGTH} characters`;
  // Printable ASCII only: a URI is sent back as registered, percent-encoded where it needs to be.
  if (!/^[\x21-\x7e]+$/.test(uri)) return `a redirect URI is printable ASCII without spaces: ${shown(uri)}`;
  if (uri.includes('#')) return `a redirect URI has no fragment (RFC 6749 section 3.1.2): ${shown(uri)}`;
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    return `a redirect URI is an absolute URI: ${shown(uri)}`;
  }
  if (parsed.username !== '' || parsed.password !== '') return `a redirect URI has no user information: ${shown(uri)}`;
  const scheme = parsed.protocol.slice(0, -1);
  if (scheme === 'https') return parsed.hostname === '' ? `a redirect URI names a host: ${shown(uri)}` : undefined;
  if (scheme === 'http') {
    return isLoopbackHost(parsed.hostname) ? undefined : `an http redirect URI must be on a loopback host (127.0.0.1, [::1], localhost); use https: ${shown(uri)}`;
  }
  if (!NEVER.has(scheme) && PRIVATE_USE_SCHEME.test(scheme)) return undefined;
  return `a redirect URI is https, http on a loopback host, or a native app's reverse-domain scheme such as com.example.app:/callback (RFC 8252 section 7.1): ${shown(uri)}`;
}

/** What is wrong with a list of redirect URIs, or undefined. */
export function checkRedirectUris(uris: readonly string[]): string | undefined {
  if (uris.length > MAX_URIS) return `a client has at most ${MAX_URIS} redirect URIs of each kind`;
  for (const uri of uris) {
    const problem = checkRedirectUri(uri);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function shown(uri: string): string {
  return uri.length > 100 ? `${uri.slice(0, 100)}...` : uri;
}
