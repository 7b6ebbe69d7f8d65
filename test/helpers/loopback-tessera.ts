import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Env } from '../../src/config.js';
import type { FakeClock } from './clock.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startTestService, type TestService, testEnv } from './service.js';

const JWKS_PATH = '/.well-known/jwks.json';

export interface LoopbackTessera {
  readonly service: TestService;
  /** `http://127.0.0.1:<port>`: ISSUER, the default audience, and where the clients connect. */
  readonly issuer: string;
  readonly jwksUrl: URL;
  /** Every request the server received: path, User-Agent, and the time (Date.now()) it arrived. */
  readonly requests: { readonly path: string; readonly userAgent: string; readonly at: number }[];
  close(): Promise<void>;
}

/**
 * A Tessera listening on 127.0.0.1. The port is taken first (port 0), so that ISSUER can name it
 * without a race for it (as in test/well-known.test.ts).
 */
export async function startLoopbackTessera(options: { clock: FakeClock; env?: Env }): Promise<LoopbackTessera> {
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  let database: TestDatabase | undefined;
  let service: TestService | undefined;
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await service?.close();
    await database?.drop();
  };
  try {
    database = await createTestDatabase();
    service = await startTestService(database, {
      env: testEnv(database, { ISSUER: issuer, PORT: String(port), ...options.env }),
      clock: options.clock,
    });
  } catch (error) {
    await close();
    throw error;
  }
  const requests: { path: string; userAgent: string; at: number }[] = [];
  server.on('request', (req) => requests.push({ path: req.url ?? '', userAgent: req.headers['user-agent'] ?? '', at: Date.now() }));
  server.on('request', service.app);
  return { service, issuer, jwksUrl: new URL(`${issuer}${JWKS_PATH}`), requests, close };
}
