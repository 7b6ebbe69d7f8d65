// Peer (issue 17): panva's oidc-provider 9.13 with the PostgreSQL adapter of ./oidc-adapter.mjs,
// configured for production: no development interactions, its own signing key, cookie keys, static
// clients (kept in memory, as Tessera keeps its clients), client credentials and introspection on.
// Client credentials for the resource PEER_RESOURCE issue RS256 JWT access tokens (as Tessera does);
// without a resource they are opaque and stored in PostgreSQL (what introspection reads).
// PEER_CLIENTS is a JSON array of client metadata; PEER_DATABASE_URL its own database, migrated.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import pg from 'pg';
import { postgresAdapter } from './oidc-adapter.mjs';

const RESOURCE = process.env.PEER_RESOURCE;
const port = Number(process.env.PORT);
const pool = new pg.Pool({ connectionString: process.env.PEER_DATABASE_URL, max: 10 });
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(`http://127.0.0.1:${port}`, {
  adapter: postgresAdapter(pool),
  clients: JSON.parse(process.env.PEER_CLIENTS),
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'peer-1', alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'profile', 'orders:read'],
  ttl: { ClientCredentials: 900, AccessToken: 900 },
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // RFC 7662 §2.1, as Tessera: a client learns about its own tokens only.
    introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== RESOURCE) throw new Provider.errors.InvalidTarget();
        return { scope: 'orders:read profile', audience: 'tessera', accessTokenTTL: 900, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
});
provider.on('server_error', (_ctx, error) => console.error(error));

const server = createServer(provider.callback()).listen(port, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
