// Before anything is measured: does each side answer each operation the same way? (issue 17)
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { FORM, form } from '../harness.mjs';

/** What Tessera does per request that the peers, as configured here, do not (printed, and in BENCHMARKS.md). */
export const UNEQUAL = [
  'Tessera checks the source address against the blocks of its failed client authentications before every client authentication, from its copy of them kept by Redis pub/sub (a Redis round trip only when an authentication fails; the password grant also counts its login limits); its per-client limit is off, its default (CLIENT_RATE_LIMIT unset); the peers have no rate limiting',
  'Tessera writes an audit line and a request log line (pino, with redaction) per request and keeps Prometheus metrics; the peers log nothing and keep no metrics',
  'refresh: Tessera keeps a family per login (generation compare-and-set, reuse detection that revokes the family, a parent replayed within REFRESH_REUSE_GRACE gets the same successor back, sealed with an HKDF-derived key); oauth2-server deletes the presented token and inserts its successor (a replay is only invalid_grant, nothing is revoked)',
  'password grant: Tessera runs at most ARGON2_MAX_CONCURRENCY (3) Argon2id verifies at once and checks the account (disabled, login limits); oauth2-server verifies on libuv\'s pool (4 threads) and checks nothing else',
  'introspection: Tessera verifies the JWT access token and reads the user and session (one query); oidc-provider reads its opaque token\'s row by primary key; Tessera also answers sub, aud, jti, username, sid',
  'client credentials: all three sign an RS256 JWT without a database write; clients are kept in memory on all sides (Tessera\'s registry cache, oauth2-server\'s model reads them once at start, oidc-provider\'s static clients)',
  'oidc-provider runs on Koa, not Express; Tessera and oauth2-server on Express 5',
];

async function call(side, path, authorization, params) {
  const res = await fetch(`${side.base}${path}`, { method: 'POST', headers: { 'content-type': FORM, authorization }, body: form(params) });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

/**
 * Checks each operation on each side that serves it; `lines` says what was checked and found.
 * `sides` as in ./run.mjs; `username`/`password` a user every side has.
 */
export async function checkEquivalence(sides, username, password) {
  const lines = ['Equivalence, checked before measuring:'];
  let ok = true;
  const expect = (condition, what) => {
    if (!condition) {
      ok = false;
      lines.push(`  NOT EQUIVALENT: ${what}`);
    }
    return condition;
  };
  const keySets = new Map();
  const verify = async (side, token) => {
    if (!keySets.has(side)) keySets.set(side, createRemoteJWKSet(new URL(`${side.base}${side.jwks}`)));
    const { payload, protectedHeader } = await jwtVerify(token, keySets.get(side), { issuer: side.base, algorithms: ['RS256'] });
    return { ...payload, alg: protectedHeader.alg };
  };
  const tokenAnswer = async (side, what, answer, { client, scope, refresh }) => {
    if (!expect(answer.status === 200, `${side.name} ${what}: ${answer.status} ${JSON.stringify(answer.body)}`)) return undefined;
    expect(answer.body.token_type?.toLowerCase() === 'bearer', `${side.name} ${what}: token_type ${answer.body.token_type}`);
    expect(typeof answer.body.expires_in === 'number', `${side.name} ${what}: no expires_in`);
    expect(refresh === (typeof answer.body.refresh_token === 'string'), `${side.name} ${what}: refresh_token ${refresh ? 'missing' : 'present'}`);
    const claims = await verify(side, answer.body.access_token).catch((error) => expect(false, `${side.name} ${what}: the access token does not verify (${error.message})`));
    if (claims) {
      expect(claims.client_id === client, `${side.name} ${what}: client_id ${claims.client_id}`);
      expect(claims.scope?.split(' ').sort().join(' ') === scope, `${side.name} ${what}: scope ${claims.scope}`);
      expect(typeof claims.sub === 'string' && typeof claims.exp === 'number' && claims.exp - claims.iat === 900, `${side.name} ${what}: sub/exp/iat ${claims.sub} ${claims.exp} ${claims.iat}`);
    }
    return answer.body;
  };

  // Password and refresh: Tessera and oauth2-server.
  for (const side of [sides.tessera, sides['oauth2-server']]) {
    const login = await tokenAnswer(side, 'password grant', await call(side, side.token, side.gateway, { grant_type: 'password', username, password }), { client: 'bench-gateway', scope: 'orders:read profile', refresh: true });
    if (login === undefined) continue;
    const refresh = (token) => call(side, side.token, side.gateway, { grant_type: 'refresh_token', refresh_token: token });
    const first = await tokenAnswer(side, 'refresh', await refresh(login.refresh_token), { client: 'bench-gateway', scope: 'orders:read profile', refresh: true });
    if (first === undefined) continue;
    expect(first.refresh_token !== login.refresh_token, `${side.name} refresh: the same refresh token came back`);
    const second = await refresh(first.refresh_token);
    expect(second.status === 200, `${side.name} refresh of the successor: ${second.status}`);
    // Once the chain has moved on, the first token is dead on both sides (Tessera: reuse, the family is revoked).
    const replay = await refresh(login.refresh_token);
    expect(replay.status === 400 && replay.body.error === 'invalid_grant', `${side.name} replay of a rotated refresh token: ${replay.status} ${JSON.stringify(replay.body)}`);
    lines.push(`  ${side.name}: password grant 200 Bearer, RS256 access token verifies (client_id, scope, sub, exp-iat 900 s); refresh 200 with a new refresh token; a rotated one replayed: ${replay.status} ${replay.body.error}`);
  }

  // Client credentials: all three (oidc-provider for its resource, which makes the token a JWT).
  for (const side of [sides.tessera, sides['oauth2-server'], sides['oidc-provider']]) {
    const params = { grant_type: 'client_credentials', scope: 'orders:read', ...(side.resource ? { resource: side.resource } : {}) };
    const answer = await tokenAnswer(side, 'client credentials', await call(side, side.token, side.service, params), { client: 'bench-service', scope: 'orders:read', refresh: false });
    if (answer) lines.push(`  ${side.name}: client credentials 200 Bearer, no refresh token, RS256 access token verifies (client_id bench-service, scope orders:read, exp-iat 900 s)`);
  }

  // Introspection: Tessera (a user's JWT, by its client) and oidc-provider (an opaque token, by its client).
  const introspected = {};
  for (const side of [sides.tessera, sides['oidc-provider']]) {
    const token = side.resource
      ? (await call(side, side.token, side.service, { grant_type: 'client_credentials', scope: 'orders:read' })).body.access_token
      : (await call(side, side.token, side.gateway, { grant_type: 'password', username, password })).body.access_token;
    const answer = await call(side, side.introspect, side.introspector, { token });
    if (!expect(answer.status === 200 && answer.body.active === true, `${side.name} introspection: ${answer.status} ${JSON.stringify(answer.body)}`)) continue;
    for (const field of ['client_id', 'scope', 'exp', 'iat', 'iss', 'token_type']) expect(answer.body[field] !== undefined, `${side.name} introspection: no ${field}`);
    const inactive = await call(side, side.introspect, side.introspector, { token: `${token.slice(0, -4)}AAAA` });
    expect(inactive.status === 200 && inactive.body.active === false, `${side.name} introspection of a bad token: ${JSON.stringify(inactive.body)}`);
    introspected[side.name] = Object.keys(answer.body);
  }
  if (Object.keys(introspected).length === 2) {
    const [[a, aFields], [b, bFields]] = Object.entries(introspected);
    const only = (x, y) => x.filter((field) => !y.includes(field)).join(', ') || 'nothing';
    lines.push(`  introspection: both 200 active:true with client_id, scope, exp, iat, iss, token_type, and active:false for a bad token; only ${a}: ${only(aFields, bFields)}; only ${b}: ${only(bFields, aFields)}`);
  }
  lines.push(ok ? '  all equivalent' : '  NOT all equivalent');
  return { ok, lines };
}
