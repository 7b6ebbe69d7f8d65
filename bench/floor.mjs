// The bounds for request handling, measured rather than guessed: a bare Express 5 app that does,
// per request, only the work an endpoint cannot avoid, with the same libraries, the same database
// and Redis, and the same number of processes (WEB_CONCURRENCY) as Tessera:
//
//   GET  /              a hello-world (the bound for JWKS: a constant document)
//   POST /sign          a form body, one Redis counter (the rate limiter), one RS256 signature
//                       (client credentials: a client Tessera keeps needs no database)
//   POST /read-verify   a form body, one Redis counter, one RS256 verification, one primary-key
//                       read (introspection: is the session still live?)
//   POST /rotate        a form body, one Redis counter, one primary-key read, one single-row
//                       update, one RS256 signature (refresh: find the family, advance it, sign)
//
// No authentication, no parsing beyond the body, no logging, no metrics: whatever Tessera spends
// above these is its own. FLOOR_DATABASE_URL holds the table `floor_rows` bench/run.mjs makes.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import express from 'express';
import { Redis } from 'ioredis';
import { jwtVerify, SignJWT } from 'jose';
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
  const redis = new Redis(process.env.FLOOR_REDIS_URL);
  const prefix = process.env.FLOOR_REDIS_PREFIX;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ROWS = 64;
  // The rate limiter's script: a counter with its window.
  const count = (key) => redis.eval("local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n", 1, `${prefix}${key}`, 60_000);
  const sign = () =>
    new SignJWT({ client_id: 'floor', scope: 'profile orders:read' })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'floor' })
      .setIssuer('http://127.0.0.1')
      .setSubject(randomUUID())
      .setAudience('tessera')
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('15m')
      .sign(privateKey);
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
    const { payload } = await jwtVerify(token, publicKey, { issuer: 'http://127.0.0.1', audience: 'tessera' });
    const { rows } = await pool.query('select id, n from floor_rows where id = $1', [row()]);
    res.json({ active: rows.length === 1, sub: payload.sub });
  });
  app.post('/rotate', form, async (_req, res) => {
    await count('client:floor');
    const id = row();
    const { rows } = await pool.query('select id, n from floor_rows where id = $1', [id]);
    await pool.query('update floor_rows set n = n + 1 where id = $1 and n = $2', [id, rows[0].n]);
    res.json({ access_token: await sign() });
  });
  const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
    if (workers <= 1) console.log('ready');
  });
  process.on('SIGTERM', () => server.close(() => Promise.all([pool.end(), redis.quit()]).then(() => process.exit(0))));
}
