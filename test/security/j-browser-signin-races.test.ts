import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { useProxiedService } from '../helpers/database-proxy.js';
import { createBrowserClient, exchangeCode, formFields, signInForCode, authorizeParams, pkce } from '../helpers/signin.js';
import { createTestUser, type TestClient } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

/**
 * ATTACKS.md J2, raced against a logout: a code exchange whose refresh family is written while
 * the browser session it came from is being ended. The service reaches PostgreSQL through a proxy
 * that holds the statement that starts the family (the session's guard and the inserts, one
 * statement: src/db/refresh-families.ts, insertFamily), so the logout runs in the gap between the
 * exchange's reading of the code and its session and that statement.
 */
const proxied = useProxiedService();
let client: TestClient;
let user: Awaited<ReturnType<typeof createTestUser>>;

beforeAll(async () => {
  client = await createBrowserClient(proxied.service());
  user = await createTestUser(proxied.service(), { scopes: ['profile'] });
});

describe('J2 a code exchange raced by a logout of its browser session', () => {
  it('the family the exchange starts ends with the session: no refresh token outlives the logout', { timeout: 30_000 }, async () => {
    const app = proxied.service().app;
    const agent = request.agent(app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(client, challenge), user);
    const ask = await agent.get('/logout');

    const marker = 'insert into "refresh_families"';
    const sent = proxied.proxy().countSent(marker);
    proxied.proxy().faultOn(marker, 'delay-query');
    let exchanged: request.Response;
    let loggedOut: request.Response;
    try {
      const exchanging = exchangeCode(app, client, code, verifier).then((res) => res);
      // The exchange has read its code and session; the statement that starts its family is held.
      await waitFor('the exchange to send the statement that starts its family', () => sent() > 0);
      const loggingOut = agent.post('/logout').type('form').send(formFields(ask.text)).then((res) => res);
      // Long enough for a logout that does not wait for the exchange to finish; well short of query_timeout.
      await Promise.race([loggingOut, new Promise((resolve) => setTimeout(resolve, 500))]);
      proxied.proxy().restore();
      [exchanged, loggedOut] = await Promise.all([exchanging, loggingOut]);
    } finally {
      proxied.proxy().restore();
    }
    expect(loggedOut.status).toBe(200);
    if (exchanged.status === 200) {
      const refreshed = await request(app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: exchanged.body.refresh_token });
      expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    } else {
      expect(exchanged.body).toEqual({ error: 'invalid_grant', error_description: 'the authorization code is invalid, expired or already used' });
    }
  });
});
