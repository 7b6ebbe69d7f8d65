/**
 * The issuer's signing keys, as a verifier in another service holds them: discovered once
 * (RFC 8414 §3), fetched over HTTP, cached, refetched when a token names a `kid` the cache lacks.
 *
 * jose's createRemoteJWKSet does most of this, but retries a failed fetch on every request: an
 * issuer that is down, slow or answering garbage would get one request per request the service
 * receives. Here every fetch (discovery or key set) goes through one gate: one at a time, shared
 * by every request waiting on it, and none for `retryAfterMs` after a failure; an unknown `kid`
 * refetches at most once per `cooldownMs`. jose still selects the key (createLocalJWKSet).
 */
import { createLocalJWKSet, errors, type FlattenedJWSInput, type JWSHeaderParameters, type KeyObject, type CryptoKey } from 'jose';
import { IssuerUnavailableError } from './errors.js';

export interface KeySetOptions {
  readonly issuer: string;
  readonly jwksUri: string | undefined;
  /** Each discovery or key-set request gives up after this long. */
  readonly timeoutMs: number;
}

/** How long fetched keys serve before the next use refreshes them (as jose's default). */
const CACHE_MAX_AGE_MS = 10 * 60_000;
/** The floor between two fetches for an unknown `kid` (as jose's default). */
const COOLDOWN_MS = 30_000;
/** After a failed fetch, no other for this long; what a 503 tells clients to wait (Retry-After). */
export const RETRY_AFTER_SECONDS = 5;

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;
export type GetKey = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey | KeyObject | Uint8Array>;

export function createKeySet(options: KeySetOptions): GetKey {
  let jwksUri = options.jwksUri;
  let keys: { local: LocalKeySet; fetchedAt: number } | undefined;
  let failedAt = -Infinity;
  let pending: Promise<void> | undefined;

  const unavailable = () => new IssuerUnavailableError(RETRY_AFTER_SECONDS);

  async function fetchKeys(): Promise<void> {
    try {
      jwksUri ??= await discoverJwksUri(options);
      const local = createLocalJWKSet((await fetchJson(jwksUri, options.timeoutMs)) as Parameters<typeof createLocalJWKSet>[0]);
      keys = { local, fetchedAt: Date.now() };
    } catch {
      // Why it failed (refused, timed out, 5xx, not JSON, not a key set) changes nothing for the
      // caller: the keys cannot be had for now.
      failedAt = Date.now();
      throw unavailable();
    }
  }

  /** One fetch at a time, shared by all who wait; none within the floor after a failure. */
  function refresh(): Promise<void> {
    if (pending) return pending;
    if (Date.now() < failedAt + RETRY_AFTER_SECONDS * 1000) return Promise.reject(unavailable());
    pending = fetchKeys().finally(() => (pending = undefined));
    return pending;
  }

  return async (header, token) => {
    // Tessera names its key in every token; one without a `kid` is not Tessera's.
    if (typeof header.kid !== 'string') throw new errors.JWKSNoMatchingKey();
    if (!keys) await refresh();
    else if (Date.now() >= keys.fetchedAt + CACHE_MAX_AGE_MS) {
      // Stale-if-error: when Tessera cannot be reached, the keys last fetched still verify, so an
      // outage of Tessera is not an outage of its verifiers.
      await refresh().catch(() => undefined);
    }
    try {
      return await keys!.local(header, token);
    } catch (error) {
      // A key added since the last fetch (a rotation): fetch again, but not more than once per cooldown.
      if (!(error instanceof errors.JWKSNoMatchingKey) || Date.now() < keys!.fetchedAt + COOLDOWN_MS) throw error;
      await refresh();
      return keys!.local(header, token);
    }
  };
}

/**
 * RFC 8414 §3.1: the metadata of an issuer with a path is at the origin's well-known URI with the
 * path after it (https://host/.well-known/oauth-authorization-server/tenant-a). An issuer behind a
 * path prefix often serves only the OpenID Connect form instead (the path, then
 * /.well-known/openid-configuration: OIDC Discovery 1.0 §4), so that is asked next. For an issuer
 * without a path the two are the same place and one is asked.
 */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname.replace(/\/$/, '');
  const rfc8414 = `${url.origin}/.well-known/oauth-authorization-server${path}`;
  return path === '' ? [rfc8414] : [rfc8414, `${url.origin}${path}/.well-known/openid-configuration`];
}

async function discoverJwksUri(options: KeySetOptions): Promise<string> {
  let lastError: unknown;
  for (const url of discoveryUrls(options.issuer)) {
    let metadata: { issuer?: unknown; jwks_uri?: unknown };
    try {
      metadata = (await fetchJson(url, options.timeoutMs)) as typeof metadata;
    } catch (error) {
      lastError = error;
      continue;
    }
    // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
    if (metadata?.issuer !== options.issuer || typeof metadata.jwks_uri !== 'string') throw new Error('discovery metadata does not match the issuer');
    return metadata.jwks_uri;
  }
  throw lastError;
}

/**
 * Discovery documents and key sets are a few KiB; an issuer that sends more (by mistake, or one
 * that is not what it claims) is refused before its answer fills the verifier's memory.
 */
export const MAX_DOCUMENT_BYTES = 256 * 1024;

async function fetchJson(url: string, timeoutMs: number): Promise<unknown> {
  // The timeout covers the body too: an issuer that trickles its answer is as down as a silent one.
  const response = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (response.status !== 200 || declared > MAX_DOCUMENT_BYTES || response.body === null) {
    await response.body?.cancel();
    throw new Error(`${url} answered ${response.status}${declared > MAX_DOCUMENT_BYTES ? ' with too large a body' : ''}`);
  }
  // Counted as it arrives: a body sent without a length (chunked) is cut off at the bound too.
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of response.body) {
    received += chunk.byteLength;
    // Leaving the loop by throwing cancels the rest of the body.
    if (received > MAX_DOCUMENT_BYTES) throw new Error(`${url} answered with too large a body`);
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}
