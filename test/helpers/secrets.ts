import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { listSigningKeys } from '../../src/db/signing-keys.js';
import type { Deps } from '../../src/deps.js';

/**
 * Every secret a test file has handed to or received from Tessera, for the suite-wide log check
 * (ATTACKS.md F3, test/logs.setup.ts): passwords of test users, client secrets, what went through
 * a recorded app (test/helpers/openapi.ts), and the private signing keys of every test service.
 * Module state: vitest isolates test files, so this is one file's set. Responses of servers that
 * are not recorded apps (`listen(deps)` in the shutdown and metrics tests, a spawned `tessera
 * serve`) are not seen here: only what those tests note themselves.
 */

/**
 * Shorter values are not checked: `b` or `short` (password-policy tests) would be found in log
 * lines that never held them. Eight characters is the password policy's own minimum.
 */
export const MIN_SECRET_LENGTH = 8;

const secrets = new Map<string, string>();
/**
 * Values the file also sent where they are not secret: path segments, and query and body fields
 * other than the secret ones. An attack test sends `' OR 1=1--` as a password and in a path alike;
 * the access log rightly shows the path, and that is not the password leaking.
 */
const publicValues = new Set<string>();

/** Remembers `value` (when it is a string of at least MIN_SECRET_LENGTH characters) as `what`. */
export function noteSecret(what: string, value: unknown): void {
  if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH || secrets.has(value)) return;
  secrets.set(value, what);
}

/** Each secret and what it is, leaving out those the file also sent in the open. */
export function knownSecrets(): ReadonlyMap<string, string> {
  return new Map([...secrets].filter(([value]) => !publicValues.has(value)));
}

const REQUEST_FIELDS = ['password', 'new_password', 'current_password', 'client_secret', 'refresh_token', 'token'];
const RESPONSE_FIELDS = ['refresh_token', 'access_token', 'client_secret', 'password'];

/**
 * Notes the secrets of one exchange with a recorded app once the response is sent: the
 * Authorization header (and the secret inside Basic credentials), secret fields of the request
 * body (form or JSON), and secrets in the response body. The request body is copied as it
 * streams by (`emit` is tapped), so the app's own body parsing is left exactly as it was.
 */
export function noteExchangeSecrets(req: IncomingMessage, res: ServerResponse, responseBody: () => Buffer): void {
  const chunks: Buffer[] = [];
  const emit = req.emit;
  req.emit = function (this: IncomingMessage, event: string | symbol, ...args: unknown[]) {
    if (event === 'data' && args[0] instanceof Uint8Array) chunks.push(Buffer.from(args[0]));
    return (emit as (...all: unknown[]) => boolean).call(this, event, ...args);
  } as typeof req.emit;
  res.once('finish', () => {
    noteAuthorization(req.headers);
    const url = new URL(req.url ?? '/', 'http://tessera.test');
    for (const segment of url.pathname.split('/')) publicValues.add(decodeOrKeep(segment));
    // A secret field in the query string (a careless client) is as secret as in the body.
    const query = [...url.searchParams].map(([name, value]) => ({ name, value, where: 'query string' }));
    const body = [...readFields(req.headers['content-type'], Buffer.concat(chunks).toString('utf8'))].flatMap(([name, values]) =>
      values.map((value) => ({ name, value, where: 'request body' })),
    );
    for (const { name, value, where } of [...query, ...body]) {
      if (REQUEST_FIELDS.includes(name)) noteSecret(`${name} (${where})`, value);
      else publicValues.add(value);
    }
    const answer = readFields(String(res.getHeader('content-type') ?? ''), responseBody().toString('utf8'));
    for (const name of RESPONSE_FIELDS) for (const value of answer.get(name) ?? []) noteSecret(`${name} (response body)`, value);
  });
}

function noteAuthorization(headers: IncomingHttpHeaders): void {
  const value = headers.authorization;
  if (value === undefined) return;
  noteSecret('Authorization header', value);
  const [scheme = '', credentials = ''] = value.trim().split(/\s+/, 2);
  noteSecret(`Authorization ${scheme} credentials`, credentials);
  if (scheme.toLowerCase() !== 'basic') return;
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const secret = decoded.slice(decoded.indexOf(':') + 1);
  noteSecret('client secret (Basic)', secret);
  noteSecret('client secret (Basic)', decodeOrKeep(secret.replace(/\+/g, ' ')));
}

function decodeOrKeep(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The string fields of a form or JSON body, by name (a form may repeat one). */
function readFields(contentType: string | undefined, text: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  const add = (name: string, value: unknown) => {
    if (typeof value === 'string') fields.set(name, [...(fields.get(name) ?? []), value]);
  };
  if (contentType?.includes('application/x-www-form-urlencoded')) {
    for (const [name, value] of new URLSearchParams(text)) add(name, value);
  } else if (contentType?.includes('json')) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null) for (const [name, value] of Object.entries(parsed)) add(name, value);
    } catch {
      // not JSON after all: nothing to note
    }
  }
  return fields;
}

/**
 * What of a private key would give it away in a log: each line of its PKCS#8 and PKCS#1 PEM
 * bodies (a base64 dump of the key contains every one of them) and its JWK private members. A
 * line that encodes nothing but modulus bytes is public: where the DER header is a multiple of
 * three bytes long (PKCS#1), it is the very text of the JWKS `n`, so it is left out.
 */
export function privateKeyMaterial(key: KeyObject): string[] {
  const jwk = key.export({ format: 'jwk' });
  const modulus = [jwk.n ?? '', Buffer.from(jwk.n ?? '', 'base64url').toString('base64')];
  const isModulus = (line: string) => modulus.some((n) => n.includes(line) || n.includes(line.replace(/\+/g, '-').replace(/\//g, '_')));
  const pemLines = (type: 'pkcs8' | 'pkcs1') =>
    (key.export({ format: 'pem', type }) as string).split('\n').filter((line) => line !== '' && !line.startsWith('-----') && !isModulus(line));
  return [...pemLines('pkcs8'), ...pemLines('pkcs1'), ...[jwk.d, jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi].filter((member) => member !== undefined)];
}

function notePrivateKey(key: KeyObject): void {
  for (const material of privateKeyMaterial(key)) noteSecret('private signing key', material);
}

const openServices = new Set<() => Promise<void>>();

/**
 * Notes the private signing keys of a test service: every key in its database that its
 * KEY_ENCRYPTION_KEYS open (next, active, retired) and the key it signs with. `collect()` runs at
 * the service's close (its database is still open then) and before every log check while the
 * service is running, so keys rotated in during a test are included.
 */
export function watchSigningKeys(deps: Pick<Deps, 'db' | 'keyRing' | 'keys'>): { close(): Promise<void> } {
  const collect = async () => {
    notePrivateKey(deps.keys.current().signing.privateKey);
    const rows = await listSigningKeys(deps.db).catch(() => []); // a test may have stopped the database
    for (const row of rows) {
      try {
        const der = deps.keyRing.decrypt({ ciphertext: row.private_key_ciphertext, kekId: row.kek_id }, row.kid);
        notePrivateKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
      } catch {
        // sealed under keys this service does not hold (a test's stranger ring): not its key
      }
    }
  };
  openServices.add(collect);
  return {
    async close() {
      openServices.delete(collect);
      await collect();
    },
  };
}

/** The signing keys of every running test service, noted now. */
export async function collectSigningKeys(): Promise<void> {
  await Promise.all([...openServices].map((collect) => collect()));
}
