import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { hashResetToken } from '../src/password-reset/tokens.js';
import { runCliOn } from './helpers/cli.js';
import { authorizeParams, createBrowserClient, exchangeCode, pkce, signInForCode } from './helpers/signin.js';
import { createFakeClock, type FakeClock } from './helpers/clock.js';
import { proxyForThisTest, throughProxy } from './helpers/database-proxy.js';
import { noteSecret } from './helpers/secrets.js';
import {
  createTestClient,
  createTestUser,
  passwordGrant,
  recordResponses,
  type TestClient,
  type TestService,
  uniqueName,
  useServicesPerTest,
} from './helpers/service.js';
import { type SmtpSink, startSmtpSink } from './helpers/smtp-sink.js';

// Issue 21 item 3: password reset by email, through a real SMTP server this file starts.

const services = useServicesPerTest('reset');
let sink: SmtpSink;
let service: TestService;
let client: TestClient;

const RESET_URL = 'https://app.example.com/account/reset?lang=en';
const mailEnv = () => ({ SMTP_URL: sink.url, MAIL_FROM: 'Tessera <no-reply@tessera.test>', PASSWORD_RESET_URL: RESET_URL });
const ACCEPTED = { message: 'if the account exists and has a verified email, a reset link is on its way there' };
const BAD_TOKEN = { error: 'invalid_grant', error_description: 'the password reset token is invalid, expired or already used' };

beforeAll(async () => {
  sink = await startSmtpSink();
  service = await services.start(mailEnv());
  client = await createTestClient(service, { scopes: ['profile'] });
});
afterAll(async () => {
  await service?.close();
  await sink?.close();
});

/** A user with an email; verified unless said otherwise. */
async function userWithEmail(target: TestService = service, options: { verified?: boolean; disabled?: boolean } = {}) {
  const user = await createTestUser(target, { scopes: ['profile'] });
  const email = `${user.username}@Example.com`;
  await target.deps.db
    .updateTable('users')
    .set({ email: `${user.username}@example.com`, email_verified: options.verified ?? true, disabled: options.disabled ?? false })
    .where('id', '=', user.id)
    .execute();
  return { ...user, email };
}

const ask = (body: object, target: TestService = service) => request(target.app).post('/password-reset').send(body);
const confirm = (body: object, target: TestService = service) => request(target.app).post('/password-reset/confirm').send(body);

/** The link of the next mail, its token noted as a secret for the log check. */
async function nextLink(): Promise<{ to: string[]; link: string; token: string; text: string; from: string; subject: string }> {
  const mail = await sink.next();
  const text = mail.parsed.text ?? '';
  const link = /https:\/\/app\.example\.com\/\S+/.exec(text)?.[0];
  expect(link).toBeDefined();
  const url = new URL(link!);
  const token = url.searchParams.get('token')!;
  noteSecret('password reset token', token);
  noteSecret('password reset link', link);
  expect(`${url.origin}${url.pathname}`).toBe('https://app.example.com/account/reset');
  expect(url.searchParams.get('lang')).toBe('en');
  return { to: mail.envelopeTo, link: link!, token, text, from: mail.parsed.from?.text ?? '', subject: mail.parsed.subject ?? '' };
}

/**
 * A confirmation held inside its password hash, after it read the token and its user: resolves
 * once the hash has begun, so that the test can act meanwhile, then `finish()` lets it go on and
 * gives its response. The app is `target`'s, with a hasher that waits for the test.
 */
async function holdConfirmInHash(target: TestService, body: object): Promise<{ finish(): Promise<request.Response> }> {
  let release!: () => void;
  let hashing!: () => void;
  const inHash = new Promise<void>((resolve) => (hashing = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const real = target.deps.passwords;
  const gated = { ...real, hash: async (password: string) => (hashing(), await gate, real.hash(password)) };
  const app = recordResponses(createApp({ ...target.deps, passwords: gated }));
  const pending = request(app).post('/password-reset/confirm').send(body).then((res) => res);
  await inHash;
  return {
    finish: () => {
      release();
      return pending;
    },
  };
}

describe('the whole way: ask, receive the mail, follow the link, confirm, log in', () => {
  it('resets the password, ends every session and makes the token single-use', async () => {
    const user = await userWithEmail();
    const login = await passwordGrant(service.app, client, user);
    expect(login.status).toBe(200);
    const { access_token: accessToken, refresh_token: refreshToken } = login.body as { access_token: string; refresh_token: string };

    const asked = await ask({ email: `  ${user.email.toUpperCase().replace('EXAMPLE.COM', 'example.com')} ` });
    expect(asked.status).toBe(202);
    expect(asked.body).toEqual(ACCEPTED);
    const mail = await nextLink();
    expect(mail.to).toEqual([`${user.username}@example.com`]);
    expect(mail.from).toBe('"Tessera" <no-reply@tessera.test>');
    expect(mail.subject).toBe('Reset your password');
    expect(mail.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(mail.text).toBe(
      'Someone (hopefully you) asked to reset the password of your account.\n\n' +
        `To choose a new password, open this link within 30 minutes:\n\n${mail.link}\n\n` +
        'The link works once. If you did not ask for it, ignore this mail: your password stays as it is.\n',
    );
    // The sending is logged, naming the user (and never the link).
    await waitFor(() => service.logs.entries().some((entry) => entry['msg'] === 'password reset mail sent' && entry['user_id'] === user.id));
    // Only the hash is stored.
    const rows = await service.deps.db.selectFrom('password_reset_tokens').selectAll().where('user_id', '=', user.id).execute();
    expect(rows.map((row) => row.token_hash)).toEqual([hashResetToken(mail.token)]);
    expect(rows[0]!.expires_at.getTime() - rows[0]!.created_at.getTime()).toBe(30 * 60 * 1000);

    const newPassword = `Fresh-${uniqueName('pw')}-horse`;
    noteSecret('new password', newPassword);
    const confirmed = await request(service.app).post('/password-reset/confirm').type('form').send({ token: mail.token, password: newPassword });
    expect(confirmed.status).toBe(204);

    // Every session ended: the refresh token is dead, the access token stops working at Tessera.
    const refreshed = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
    const userinfo = await request(service.app).get('/userinfo').set('Authorization', `Bearer ${accessToken}`);
    expect(userinfo.status).toBe(401);
    expect(userinfo.body).toEqual({ error: 'invalid_token', error_description: 'the access token is not valid' });

    // The new password works, the old one does not.
    expect((await passwordGrant(service.app, client, { username: user.username, password: newPassword })).status).toBe(200);
    const old = await passwordGrant(service.app, client, user);
    expect(old.status).toBe(400);
    expect(old.body).toEqual({ error: 'invalid_grant', error_description: 'the username or password is incorrect' });

    // The token worked once.
    const again = await confirm({ token: mail.token, password: `Other-${uniqueName('pw')}-tree` });
    expect(again.status).toBe(400);
    expect(again.body).toEqual(BAD_TOKEN);
    // This user's line: other tests of the file reset passwords on the same service, in any order.
    expect(service.logs.entries('password_reset_completed').filter((entry) => entry['user_id'] === user.id)).toEqual([
      expect.objectContaining({ user_id: user.id, sessions_ended: 1 }),
    ]);
    // And in the audit log: the reset in its own transaction, the request and the failed reuse in the next batch.
    await service.deps.audit.flush();
    const audited = await service.deps.db
      .selectFrom('audit_events')
      .select(['type', 'actor_type', 'actor_id', 'details'])
      .where('subject', '=', user.id)
      .where('type', 'like', 'password_reset_%')
      .orderBy('type')
      .execute();
    expect(audited).toEqual([
      { type: 'password_reset_completed', actor_type: 'user', actor_id: user.id, details: { sessions_ended: 1 } },
      { type: 'password_reset_requested', actor_type: 'user', actor_id: user.id, details: { mail: true } },
    ]);
    const failed = await service.deps.db.selectFrom('audit_events').select(['actor_type', 'details']).where('type', '=', 'password_reset_failed').execute();
    expect(failed).toContainEqual({ actor_type: 'user', details: { reason: 'invalid_token' } });
  });

  it('ends the browser session too: /authorize asks to sign in again, and its tokens stop working', async () => {
    const user = await userWithEmail();
    const browserClient = await createBrowserClient(service);
    const agent = request.agent(service.app);
    const { verifier, challenge } = pkce();
    const { code } = await signInForCode(agent, authorizeParams(browserClient, challenge), user);
    const tokens = await exchangeCode(service.app, browserClient, code, verifier);
    expect(tokens.status).toBe(200);
    const { access_token: accessToken, refresh_token: refreshToken } = tokens.body as { access_token: string; refresh_token: string };
    // Signed in: the next /authorize goes straight back with a code.
    expect((await agent.get('/authorize').query(authorizeParams(browserClient, pkce().challenge))).status).toBe(302);

    await ask({ username: user.username });
    const { token } = await nextLink();
    expect((await confirm({ token, password: `Browser-${uniqueName('pw')}-gone` })).status).toBe(204);

    const again = await agent.get('/authorize').query(authorizeParams(browserClient, pkce().challenge));
    expect(again.status).toBe(200);
    expect(again.text).toContain('name="password"');
    expect((await request(service.app).get('/userinfo').set('Authorization', `Bearer ${accessToken}`)).status).toBe(401);
    const refreshed = await request(service.app).post('/token').type('form').set('Authorization', browserClient.basic).send({ grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body).toEqual({ error: 'invalid_grant', error_description: 'the refresh token is invalid, expired or revoked' });
  });

  it('asks by username in a form too; a newer link and an older one: using one ends the other', async () => {
    const user = await userWithEmail();
    expect((await request(service.app).post('/password-reset').type('form').send({ username: user.username.toUpperCase() })).status).toBe(202);
    const first = await nextLink();
    expect((await ask({ username: user.username })).status).toBe(202);
    const second = await nextLink();
    expect(second.token).not.toBe(first.token);
    expect((await confirm({ token: second.token, password: `Second-${uniqueName('pw')}-lamp` })).status).toBe(204);
    const older = await confirm({ token: first.token, password: `First-${uniqueName('pw')}-lamp` });
    expect(older.status).toBe(400);
    expect(older.body).toEqual(BAD_TOKEN);
  });
});

describe('a link confirmed twice at once', () => {
  it('works once: the confirmation that read it first but writes last is refused, and its password is never set', async () => {
    const user = await userWithEmail();
    await ask({ username: user.username });
    const { token } = await nextLink();
    const slow = `Slow-${uniqueName('pw')}-gate`;
    const fast = `Fast-${uniqueName('pw')}-gate`;
    noteSecret('held password', slow);
    noteSecret('racing password', fast);
    // The first has found the token live and its user, and is hashing its password: the second goes all the way meanwhile.
    const held = await holdConfirmInHash(service, { token, password: slow });
    expect((await confirm({ token, password: fast })).status).toBe(204);
    const late = await held.finish();
    expect(late.status).toBe(400);
    expect(late.body).toEqual(BAD_TOKEN);
    expect((await passwordGrant(service.app, client, { username: user.username, password: fast })).status).toBe(200);
    expect((await passwordGrant(service.app, client, { username: user.username, password: slow })).status).toBe(400);
    expect(service.logs.entries('password_reset_completed').filter((entry) => entry['user_id'] === user.id)).toHaveLength(1);
  });
});

describe('the database lost during a confirmation', () => {
  it('is a 503, not a bad link: nothing changed, and the link still works once the database is back', async () => {
    const proxy = await proxyForThisTest(services.database().url);
    const proxied = await services.forTest(mailEnv(), { database: throughProxy(services.database(), proxy) });
    const user = await userWithEmail(proxied);
    await ask({ username: user.username }, proxied);
    const { token } = await nextLink();
    const lost = `Lost-${uniqueName('pw')}-wire`;
    noteSecret('lost password', lost);
    const held = await holdConfirmInHash(proxied, { token, password: lost });
    proxy.cut();
    const failed = await held.finish().finally(() => proxy.restore());
    expect(failed.status).toBe(503);
    expect(failed.body).toMatchObject({ error: 'temporarily_unavailable' });
    expect((await passwordGrant(proxied.app, client, user)).status).toBe(200);
    expect((await confirm({ token, password: `Back-${uniqueName('pw')}-wire` }, proxied)).status).toBe(204);
  });
});

describe('a link sent before the account changed', () => {
  it('stops working once the password is changed another way, the email changes, or the user is disabled', async () => {
    const gateway = await createTestClient(service, { scopes: ['admin'] });
    const operator = await createTestUser(service, { roles: { administrators: ['admin'] } });
    const adminToken = (await passwordGrant(service.app, gateway, operator, { scope: 'admin' })).body.access_token as string;
    const patch = (id: string, body: object) => request(service.app).patch(`/admin/users/${id}`).set('Authorization', `Bearer ${adminToken}`).send(body);

    // The user changes their password themselves (they remembered it, or they fear the mailbox is read).
    const changer = await userWithEmail();
    await ask({ username: changer.username });
    const beforeChange = await nextLink();
    const accessToken = (await passwordGrant(service.app, client, changer)).body.access_token as string;
    const changed = await request(service.app)
      .post('/users/me/password')
      .set('Authorization', `Bearer ${accessToken}`)
      .send({ current_password: changer.password, new_password: `Changed-${uniqueName('pw')}-kite` });
    expect(changed.status).toBe(204);

    // An operator moves the account to a new address: the link went to the old one.
    const moved = await userWithEmail();
    await ask({ username: moved.username });
    const beforeMove = await nextLink();
    expect((await patch(moved.id, { email: `${moved.username}@new.example.com`, email_verified: true })).status).toBe(200);

    // An operator disables the account, then enables it again.
    const disabled = await userWithEmail();
    await ask({ username: disabled.username });
    const beforeDisable = await nextLink();
    expect((await patch(disabled.id, { disabled: true })).status).toBe(200);
    expect((await patch(disabled.id, { disabled: false })).status).toBe(200);

    for (const mail of [beforeChange, beforeMove, beforeDisable]) {
      const res = await confirm({ token: mail.token, password: `Taken-${uniqueName('pw')}-over` });
      expect(res.status).toBe(400);
      expect(res.body).toEqual(BAD_TOKEN);
    }
    // The operator's own change of a name does not end a link.
    const renamed = await userWithEmail();
    await ask({ username: renamed.username });
    const beforeRename = await nextLink();
    expect((await patch(renamed.id, { name: 'Renamed' })).status).toBe(200);
    expect((await confirm({ token: beforeRename.token, password: `Still-${uniqueName('pw')}-fine` })).status).toBe(204);
  });
});

describe('no mail, and the same answer', () => {
  it('for an unknown name, an unverified or missing email, or a disabled user', async () => {
    const unverified = await userWithEmail(service, { verified: false });
    const disabled = await userWithEmail(service, { disabled: true });
    const noEmail = await createTestUser(service);
    const before = sink.received.length;
    for (const body of [
      { username: uniqueName('nobody') },
      { email: `${uniqueName('nobody')}@example.com` },
      { email: 'not an email at all' },
      { username: unverified.username },
      { email: unverified.email },
      { username: disabled.username },
      { username: noEmail.username },
    ]) {
      const res = await ask(body);
      expect(res.status, JSON.stringify(body)).toBe(202);
      expect(res.body).toEqual(ACCEPTED);
    }
    // A known user's mail, asked after all of those, is the only one to arrive.
    const known = await userWithEmail();
    await ask({ username: known.username });
    const mail = await nextLink();
    expect(mail.to).toEqual([`${known.username}@example.com`]);
    expect(sink.received.length).toBe(before + 1);
    const stored = await service.deps.db.selectFrom('password_reset_tokens').select('user_id').where('user_id', 'in', [unverified.id, disabled.id, noEmail.id]).execute();
    expect(stored).toEqual([]);
    // The row a request for nobody writes (for the timing) is gone with its transaction.
    expect(await service.deps.db.selectFrom('password_reset_tokens').select('token_hash').where('user_id', 'is', null).execute()).toEqual([]);
  });

  it('answers as fast for a known user as for an unknown one, even with a slow mail server', async () => {
    sink.delayAcceptance(400);
    try {
      const known = await userWithEmail();
      const time = async (body: object) => {
        const started = performance.now();
        expect((await ask(body)).status).toBe(202);
        return performance.now() - started;
      };
      const knownTimes: number[] = [];
      const unknownTimes: number[] = [];
      for (let i = 0; i < 4; i += 1) {
        knownTimes.push(await time({ username: known.username }));
        unknownTimes.push(await time({ username: uniqueName('nobody') }));
      }
      const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
      // Sending on the response path would add the server's 400 ms to every known answer.
      expect(median(knownTimes) - median(unknownTimes)).toBeLessThan(200);
      for (let i = 0; i < 4; i += 1) await nextLink();
    } finally {
      sink.delayAcceptance(0);
    }
  });
});

describe('bad input', () => {
  it('refuses a request that names nobody or both, or too much', async () => {
    const cases: [object, string][] = [
      [{}, 'give either username or email'],
      [{ username: 'a', email: 'a@example.com' }, 'give either username or email'],
      [{ username: '  ' }, 'username must be 1 to 256 bytes without control characters'],
      [{ email: `${'x'.repeat(300)}@example.com` }, 'email must be 1 to 256 bytes without control characters'],
    ];
    for (const [body, description] of cases) {
      const res = await ask(body);
      expect(res.status, description).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', error_description: description });
    }
  });

  it('refuses an unknown, malformed, used or expired token with invalid_grant, changing nothing', async () => {
    const user = await userWithEmail();
    const password = `Never-${uniqueName('pw')}-set`;
    for (const token of ['x'.repeat(43), 'short', `${'A'.repeat(42)}!`]) {
      const res = await confirm({ token, password });
      expect(res.status).toBe(400);
      expect(res.body).toEqual(BAD_TOKEN);
    }
    await ask({ username: user.username });
    const { token } = await nextLink();
    service.clock.advance(30 * 60 * 1000);
    try {
      const expired = await confirm({ token, password });
      expect(expired.status).toBe(400);
      expect(expired.body).toEqual(BAD_TOKEN);
    } finally {
      service.clock.advance(-30 * 60 * 1000);
    }
    // The old password still works: nothing was written.
    expect((await passwordGrant(service.app, client, user)).status).toBe(200);
    const row = await service.deps.db.selectFrom('password_reset_tokens').select('used_at').where('token_hash', '=', hashResetToken(token)).executeTakeFirstOrThrow();
    expect(row.used_at).toBeNull();
  });

  it('refuses a malformed token before it reads the database; a well-formed unknown one is looked up', async () => {
    const proxy = await proxyForThisTest(services.database().url);
    const proxied = await services.forTest(mailEnv(), { database: throughProxy(services.database(), proxy) });
    const reads = proxy.countSent('password_reset_tokens');
    const password = `Never-${uniqueName('pw')}-read`;
    for (const token of [`!${'A'.repeat(43)}`, `${'A'.repeat(43)}!`, `${'A'.repeat(42)}!`, 'short']) {
      const res = await confirm({ token, password }, proxied);
      expect(res.status, token).toBe(400);
      expect(res.body).toEqual(BAD_TOKEN);
    }
    expect(reads()).toBe(0);
    expect((await confirm({ token: 'x'.repeat(43), password }, proxied)).body).toEqual(BAD_TOKEN);
    expect(reads()).toBe(1);
  });

  it('refuses a password the policy refuses, and the token stays usable', async () => {
    const user = await userWithEmail();
    await ask({ username: user.username });
    const { token } = await nextLink();
    const weak = await confirm({ token, password: 'short' });
    expect(weak.status).toBe(400);
    expect(weak.body).toEqual({ error: 'invalid_request', error_description: 'the password must have at least 8 characters' });
    const missing = await confirm({ token });
    expect(missing.body).toEqual({ error: 'invalid_request', error_description: 'token and password are required' });
    expect((await passwordGrant(service.app, client, user)).status).toBe(200);
    expect((await confirm({ token, password: `Strong-${uniqueName('pw')}-enough` })).status).toBe(204);
  });
});

describe('tessera purge', () => {
  it('deletes tokens a day after they expired, and keeps live ones', async () => {
    const user = await userWithEmail();
    await ask({ username: user.username });
    const { token } = await nextLink();
    const env = { DATABASE_URL: services.database().url, KEY_ENCRYPTION_KEYS: services.kek };
    const purge = (clock: FakeClock) => runCliOn(env, ['purge', '--json'], { clock });
    const exists = async () => (await service.deps.db.selectFrom('password_reset_tokens').select('token_hash').where('token_hash', '=', hashResetToken(token)).execute()).length;
    expect((await purge(service.clock)).code).toBe(0);
    expect(await exists()).toBe(1);
    const later = createFakeClock(service.clock.now() + 30 * 60 * 1000 + 86_400_000);
    const purged = await purge(later);
    expect(purged.code).toBe(0);
    expect(JSON.parse(purged.stdout)).toMatchObject({ reset_tokens_deleted: expect.any(Number) });
    expect(JSON.parse(purged.stdout).reset_tokens_deleted).toBeGreaterThanOrEqual(1);
    expect(await exists()).toBe(0);
  });
});

describe('limits', () => {
  it('limits requests per account named, whether or not it exists (429)', async () => {
    const limited = await services.forTest({ ...mailEnv(), PASSWORD_RESET_ACCOUNT_LIMIT: '2' });
    const name = uniqueName('nobody');
    expect((await ask({ username: name }, limited)).status).toBe(202);
    expect((await ask({ username: name.toUpperCase() }, limited)).status).toBe(202);
    const third = await ask({ username: name }, limited);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    // Another account from the same IP is not affected.
    expect((await ask({ username: uniqueName('other') }, limited)).status).toBe(202);
  });

  it('counts a request by email under its address, whatever its case and the spaces around it; another address has its own count', async () => {
    const limited = await services.forTest({ ...mailEnv(), PASSWORD_RESET_ACCOUNT_LIMIT: '2' });
    const email = `${uniqueName('nobody')}@example.com`;
    expect((await ask({ email }, limited)).status).toBe(202);
    expect((await ask({ email: `  ${email.toUpperCase()} ` }, limited)).status).toBe(202);
    const third = await ask({ email }, limited);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
    expect((await ask({ email: `${uniqueName('other')}@example.com` }, limited)).status).toBe(202);
  });

  it('limits requests per IP, for both endpoints together (429 with RateLimit headers)', async () => {
    const limited = await services.forTest({ ...mailEnv(), LOGIN_IP_LIMIT: '2' });
    const first = await ask({ username: uniqueName('a') }, limited);
    expect(first.headers['ratelimit']).toMatch(/^"password_reset"; r=1; t=\d+$/);
    expect((await confirm({ token: 'x'.repeat(43), password: 'whatever-it-is' }, limited)).status).toBe(400);
    const third = await ask({ username: uniqueName('b') }, limited);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests; retry later' });
  });
});

describe('the mail server down', () => {
  it('is still a 202, and an error in the log without the link', async () => {
    const closed = await freePort();
    const down = await services.forTest({ ...mailEnv(), SMTP_URL: `smtp://127.0.0.1:${closed}` });
    const user = await userWithEmail(down);
    const res = await ask({ username: user.username }, down);
    expect(res.status).toBe(202);
    expect(res.body).toEqual(ACCEPTED);
    await waitFor(() => down.logs.entries().some((line) => line['msg'] === 'the password reset mail could not be sent'));
    const line = down.logs.entries().find((entry) => entry['msg'] === 'the password reset mail could not be sent')!;
    expect(line).toMatchObject({ level: 'error', user_id: user.id, code: 'ESOCKET' });
    expect(JSON.stringify(down.logs.entries())).not.toContain('token=');
  });
});

describe('a mail server that hangs', () => {
  it('holds at most 10 connections: mail past them is refused at once and logged, still a 202', async () => {
    // Accepts the connection and never says a word: each try would wait out the greeting timeout.
    const sockets: Socket[] = [];
    const hanging = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = hanging.address() as AddressInfo;
      const stuck = await services.forTest({ ...mailEnv(), SMTP_URL: `smtp://127.0.0.1:${port}` });
      const users = await Promise.all(Array.from({ length: 14 }, () => userWithEmail(stuck)));
      for (const user of users) {
        const res = await ask({ username: user.username }, stuck);
        expect(res.status).toBe(202);
        expect(res.body).toEqual(ACCEPTED);
      }
      const failed = () => stuck.logs.entries().filter((line) => line['msg'] === 'the password reset mail could not be sent');
      await waitFor(() => failed().length === 4);
      expect(failed()).toEqual(Array.from({ length: 4 }, () => expect.objectContaining({ level: 'error', code: 'EBUSY' })));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(sockets.length).toBe(10);
      // The server goes away: the 10 waiting end with an error each.
      for (const socket of sockets) socket.destroy();
      await waitFor(() => failed().length === 14);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => hanging.close(() => resolve()));
    }
  });
});

describe('off without SMTP_URL', () => {
  it('is 404 for both paths', async () => {
    const off = await services.forTest({});
    for (const path of ['/password-reset', '/password-reset/confirm']) {
      const res = await request(off.app).post(path).send({ username: 'alice' });
      expect(res.status).toBe(404);
    }
  });

  it('wants SMTP_URL, MAIL_FROM and PASSWORD_RESET_URL together, and valid', () => {
    const base = { DATABASE_URL: 'postgres://x/y', KEY_ENCRYPTION_KEYS: Buffer.alloc(32).toString('base64') };
    expect(() => loadConfig({ ...base, SMTP_URL: 'smtp://127.0.0.1:25' })).toThrow(
      'Invalid configuration: SMTP_URL, MAIL_FROM and PASSWORD_RESET_URL must be set together (password reset by email), or none of them',
    );
    expect(() => loadConfig({ ...base, SMTP_URL: 'http://mail:secret@x', MAIL_FROM: 'nobody', PASSWORD_RESET_URL: 'https://a.example/#x' })).toThrow(
      [
        'Invalid configuration:',
        '  - SMTP_URL must be an smtp:// or smtps:// URL such as smtps://user:password@mail.example.com:465',
        '  - MAIL_FROM must be an email address or "Name <address>" (got "nobody")',
        '  - PASSWORD_RESET_URL must be an https URL (http only on a loopback host: 127.0.0.1, [::1], localhost) without a fragment or a token parameter: the mail adds ?token=... (got "https://a.example/#x")',
      ].join('\n'),
    );
    // The link carries a token that sets the password: never over cleartext http, but on this machine.
    const httpUrl = 'http://app.example.com/reset';
    expect(() => loadConfig({ ...base, SMTP_URL: 'smtp://127.0.0.1:25', MAIL_FROM: 'auth@example.com', PASSWORD_RESET_URL: httpUrl })).toThrow(
      `Invalid configuration: PASSWORD_RESET_URL must be an https URL (http only on a loopback host: 127.0.0.1, [::1], localhost) without a fragment or a token parameter: the mail adds ?token=... (got "${httpUrl}")`,
    );
    for (const loopback of ['http://localhost:3000/reset', 'http://127.0.0.1/reset', 'http://[::1]:8080/reset']) {
      expect(loadConfig({ ...base, SMTP_URL: 'smtp://127.0.0.1:25', MAIL_FROM: 'auth@example.com', PASSWORD_RESET_URL: loopback }).passwordReset?.resetUrl).toBe(loopback);
    }
    // A query string would be read by nodemailer as options over Tessera's own (logger=true).
    expect(() => loadConfig({ ...base, SMTP_URL: 'smtp://mail.example.com:587?logger=true', MAIL_FROM: 'auth@example.com', PASSWORD_RESET_URL: 'https://app.example.com/reset' })).toThrow(
      'Invalid configuration: SMTP_URL must not have a query string: only smtp(s)://user:password@host:port is read',
    );
    const config = loadConfig({ ...base, SMTP_URL: 'smtps://u:p@mail.example.com:465', MAIL_FROM: 'Tessera <auth@example.com>', PASSWORD_RESET_URL: 'https://app.example.com/reset' });
    expect(config.passwordReset).toEqual({ smtpUrl: 'smtps://u:p@mail.example.com:465', mailFrom: 'Tessera <auth@example.com>', resetUrl: 'https://app.example.com/reset' });
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
