// The bounds for request handling, measured rather than guessed: a bare Express 5 app that does,
// per request, only the work an endpoint cannot avoid, with the same libraries, the same database
// (and Redis, when Tessera needs it) and the same number of processes (WEB_CONCURRENCY) as Tessera:
//
//   GET  /              a hello-world (the bound for JWKS: a constant document)
//   POST /sign          a form body, one RS256 signature (client credentials: a client Tessera
//                       keeps needs no database)
//   POST /read-verify   a form body, one RS256 verification, one primary-key read (introspection:
//                       is the session still live?)
//   POST /rotate        a form body, one single-row update that reads and advances in one
//                       statement, one RS256 signature (refresh: advance the family, sign)
//
// Each does its work the cheapest way Tessera could: the signature with node:crypto's callback form
// (on libuv's pool, as Tessera's), the verification synchronously, one statement per rotation.
// FLOOR_REDIS_COUNTER=1 adds one Redis counter per POST (a shared per-client limit's round trip):
// `npm run bench` runs Tessera with a per-client limit and sets it; `--peers` runs Tessera at its
// default (no per-client limit, no Redis command on a successful request) and does not.
//
// No authentication, no parsing beyond the body, no logging, no metrics: whatever Tessera spends
// above these is its own. FLOOR_DATABASE_URL holds the table `floor_rows` bench/run.mjs makes.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomUUID, sign as rsaSign, verify as rsaVerify } from 'node:crypto';
import express from 'express';
import { Redis } from 'ioredis';
import pg from 'pg';

const workers = Number(process.env.WEB_CONCURRENCY ?? '1');
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) console.log('ready');
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const pool = new pg.Pool({ connectionString: process.env.FLOOR_DATABASE_URL, max: 10 });
  const redis = process.env.FLOOR_REDIS_COUNTER === '1' ? new Redis(process.env.FLOOR_REDIS_URL) : undefined;
  const prefix = process.env.FLOOR_REDIS_PREFIX;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ROWS = 64;
  const ISSUER = 'http://127.0.0.1';
  // The rate limiter's script: a counter with its window.
  const count = (key) =>
    redis?.eval("local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n", 1, `${prefix}${key}`, 60_000);
  const encode = (value) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
  const HEADER = encode({ alg: 'RS256', typ: 'at+jwt', kid: 'floor' });
  const sign = () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { client_id: 'floor', scope: 'profile orders:read', iss: ISSUER, sub: randomUUID(), aud: 'tessera', jti: randomUUID(), iat: now, exp: now + 900 };
    const input = `${HEADER}.${encode(claims)}`;
    return new Promise((resolve, reject) =>
      rsaSign('sha256', Buffer.from(input, 'ascii'), privateKey, (error, signature) => (error ? reject(error) : resolve(`${input}.${signature.toString('base64url')}`))),
    );
  };
  // The checks a verifier cannot skip: the signature, then issuer, audience and expiry.
  const verify = (jwt) => {
    const [header, payload, signature] = jwt.split('.');
    if (!rsaVerify('sha256', Buffer.from(`${header}.${payload}`, 'ascii'), publicKey, Buffer.from(signature, 'base64url'))) throw new Error('bad signature');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (claims.iss !== ISSUER || claims.aud !== 'tessera' || claims.exp <= Date.now() / 1000) throw new Error('bad claims');
    return claims;
  };
  const token = await sign();
  const row = () => Math.floor(Math.random() * ROWS);

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  const form = express.urlencoded({ extended: false });
  app.get('/', (_req, res) => {
    res.json({ hello: 'world' });
  });
  app.post('/sign', form, async (_req, res) => {
    await count('client:floor');
    res.json({ access_token: await sign() });
  });
  app.post('/read-verify', form, async (_req, res) => {
    await count('client:floor');
    const claims = verify(token);
    const { rows } = await pool.query('select id, n from floor_rows where id = $1', [row()]);
    res.json({ active: rows.length === 1, sub: claims.sub });
  });
  app.post('/rotate', form, async (_req, res) => {
    await count('client:floor');
    const { rows } = await pool.query('update floor_rows set n = n + 1 where id = $1 returning n', [row()]);
    res.json({ access_token: await sign(), n: rows[0].n });
  });
  const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
    if (workers <= 1) console.log('ready');
  });
  process.on('SIGTERM', () => server.close(() => Promise.all([pool.end(), redis?.quit()]).then(() => process.exit(0))));
}
