import request from 'supertest';
import { expect, it } from 'vitest';
import { purgeBrowserSessions } from '../src/refresh/housekeeping.js';
import { BROWSER_SESSION_SECONDS } from '../src/signin/browser-sessions.js';
import { authorizeParams, createBrowserClient, pkce, signInForCode } from './helpers/signin.js';
import { createTestUser, useTestService } from './helpers/service.js';

// The housekeeping of hosted sign-in: a browser session past its lifetime is deleted, with its
// authorization codes; a live one stays.

const running = useTestService();

it('purges browser sessions past their lifetime, with their codes, in batches (at most maxPerRun of them), and keeps the live ones', async () => {
  const service = running.current();
  const db = running.database().db;
  const client = await createBrowserClient(service);
  const user = await createTestUser(service, { scopes: ['profile'] });
  const signIn = async () => {
    const { challenge } = pkce();
    await signInForCode(request.agent(service.app), authorizeParams(client, challenge), user);
  };
  await signIn();
  await signIn();
  await signIn();
  const sessions = () => db.selectFrom('browser_sessions').select('id').where('user_id', '=', user.id).execute();
  const codes = () => db.selectFrom('authorization_codes').select('code_hash').where('user_id', '=', user.id).execute();
  expect(await sessions()).toHaveLength(3);
  expect((await codes()).length).toBeGreaterThanOrEqual(3);

  // A second before the end of their lifetime: nothing goes.
  service.clock.advance(BROWSER_SESSION_SECONDS * 1000 - 1000);
  expect(await purgeBrowserSessions(service.deps)).toBe(0);
  await signIn(); // a new one, alive for another BROWSER_SESSION_SECONDS

  service.clock.advance(1000);
  // One batch of two at most, then the rest with the defaults; the new one stays.
  expect(await purgeBrowserSessions(service.deps, { size: 2, maxPerRun: 1 })).toBe(2);
  expect(await purgeBrowserSessions(service.deps)).toBe(1);
  expect(await sessions()).toHaveLength(1);
  expect(await codes()).toHaveLength(1);
});
