import type request from 'supertest';
import { createApp } from '../../src/http/app.js';
import { passwordGrant, recordResponses, type TestService } from './service.js';

/**
 * A password login held inside its password verify: resolves once the verify has begun, so that
 * the test can change the account underneath it, then `finish()` lets it go on and gives its
 * response. For races between a login and a password change or a disable.
 */
export async function holdLoginInVerify(
  service: TestService,
  client: { readonly basic: string },
  user: { readonly username: string; readonly password: string },
): Promise<{ finish(): Promise<request.Response> }> {
  let release!: () => void;
  let verifying!: () => void;
  const inVerify = new Promise<void>((resolve) => (verifying = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const real = service.deps.passwords;
  const gated = { ...real, verify: async (hash: string, password: string) => (verifying(), await gate, real.verify(hash, password)) };
  const app = recordResponses(createApp({ ...service.deps, passwords: gated }));
  const pending = passwordGrant(app, client, user).then((res) => res);
  await inVerify;
  return {
    finish: () => {
      release();
      return pending;
    },
  };
}
