// Peer (issue 17): @node-oauth/oauth2-server 5.3 on Express 5, with the PostgreSQL model of
// ./oauth2-server-model.mjs: the password, refresh_token and client_credentials grants at POST
// /token, the key set at /.well-known/jwks.json. One process, NODE_ENV=production; PEER_DATABASE_URL
// is its own database, already migrated and seeded by bench/peers/run.mjs.
import { generateKeyPairSync } from 'node:crypto';
import OAuth2Server from '@node-oauth/oauth2-server';
import express from 'express';
import { exportJWK } from 'jose';
import pg from 'pg';
import { ACCESS_TOKEN_SECONDS, createModel, REFRESH_TOKEN_SECONDS } from './oauth2-server-model.mjs';

const { Request, Response } = OAuth2Server;
const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const pool = new pg.Pool({ connectionString: process.env.PEER_DATABASE_URL, max: 10 });
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = 'peer-1';
const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] };

const oauth = new OAuth2Server({
  model: await createModel(pool, { issuer, privateKey, kid }),
  accessTokenLifetime: ACCESS_TOKEN_SECONDS,
  refreshTokenLifetime: REFRESH_TOKEN_SECONDS,
  alwaysIssueNewRefreshToken: true,
});

const app = express();
app.disable('x-powered-by');
app.post('/token', express.urlencoded({ extended: false }), async (req, res) => {
  const request = new Request({ headers: req.headers, method: req.method, query: req.query, body: req.body });
  const response = new Response(res);
  try {
    await oauth.token(request, response);
    res.set(response.headers).status(response.status).json(response.body);
  } catch (error) {
    const status = error.code ?? 500;
    res.set('cache-control', 'no-store').status(status).json({ error: status === 500 ? 'server_error' : error.name, error_description: error.message });
  }
});
app.get('/.well-known/jwks.json', (_req, res) => {
  res.json(jwks);
});
const server = app.listen(port, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
