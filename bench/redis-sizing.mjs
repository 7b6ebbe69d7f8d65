// Redis sizing for the rate limits (README, "Choosing a Redis deployment, and sizing it"),
// measured rather than guessed: the real limiter code (dist/, `npm run build` first) writes its
// keys into a redis-server of this script's own (a free loopback port, nothing saved, stopped at
// the end), and Redis says what they cost.
//
//   node bench/redis-sizing.mjs [users]      (default 100000)
//
// For `users` distinct accounts, each from an address of its own:
//   failed:     one wrong password each (login_ip, login_ip_account, login_account): the keys a
//               password-spraying run or a crowd of typos leaves, for the layers' windows;
//   signed in:  one right password each (login_ip, known_source): known_source lasts 30 days,
//               so this is what a month of active users keeps in Redis.
// It prints keys per login, bytes per key (MEMORY USAGE) and used_memory per user, and the
// same per million users.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadConfig } from '../dist/src/config.js';
import { FailoverStore } from '../dist/src/limits/failover-store.js';
import { createLoginAttempts } from '../dist/src/limits/login-attempts.js';
import { connectRedis } from '../dist/src/limits/redis.js';

const users = Number(process.argv[2] ?? 100_000);
const CONCURRENCY = 32;

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port: free } = probe.address();
    probe.close(() => resolve(free));
  });
});
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
const url = `redis://127.0.0.1:${port}`;
const admin = new Redis(url, { retryStrategy: (attempt) => (attempt > 50 ? null : 100) });
admin.on('error', () => undefined); // refused until the server listens: retried

try {
  await admin.ping();
  // login_ip's window is one minute: longer here, so that no key expires during a run (a key's
  // size does not depend on its TTL).
  const config = loadConfig({ REDIS_URL: url, LOGIN_IP_WINDOW: '1h' });
  const log = pino({ level: 'silent' });
  const link = connectRedis(config.redis, log);
  await link.ready(5_000);
  const prefix = config.rateLimits.prefix;
  const loginIp = new FailoverStore(link, `${prefix}login_ip:`);
  loginIp.init({ windowMs: config.rateLimits.loginIp.window * 1000 });
  const logins = createLoginAttempts(config.rateLimits, link, log, () => undefined);
  await new Promise((resolve) => setTimeout(resolve, 200)); // the stores load their scripts

  const address = (i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))[1]);
  const scenario = async (name, verdict) => {
    await admin.flushall();
    const before = await usedMemory();
    let next = 0;
    const one = async () => {
      for (let i = next++; i < users; i = next++) {
        const ip = address(i);
        await loginIp.increment(ip); // what the login_ip middleware counts for the request
        await logins.attempt(ip, `sizing-user-${i}`, async () => ({ verdict, result: undefined }));
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, one));
    const after = await usedMemory();
    const keys = await admin.dbsize();
    const layers = {};
    for await (const batch of admin.scanStream({ count: 1000 })) {
      for (const key of batch) {
        const layer = key.slice(prefix.length, key.indexOf(':', prefix.length));
        layers[layer] ??= { keys: 0, sampled: [] };
        layers[layer].keys += 1;
        if (layers[layer].sampled.length < 200) layers[layer].sampled.push(key);
      }
    }
    console.log(`\n${name}: ${users} users, each one login from an address of its own`);
    console.log(`  keys: ${keys} (${(keys / users).toFixed(2)} per login)${link.isUsable() ? '' : '  [Redis fell out during the run: counts are short]'}`);
    for (const [layer, { keys: count, sampled }] of Object.entries(layers)) {
      const sizes = await Promise.all(sampled.map((key) => admin.call('MEMORY', 'USAGE', key)));
      const mean = sizes.reduce((sum, size) => sum + Number(size), 0) / sizes.length;
      console.log(`  ${layer}: ${count} keys, MEMORY USAGE ${mean.toFixed(0)} bytes each (mean of ${sizes.length})`);
    }
    const perUser = (after - before) / users;
    console.log(`  used_memory: +${((after - before) / 1048576).toFixed(1)} MiB, ${perUser.toFixed(0)} bytes per user, ${((perUser * 1_000_000) / 1048576).toFixed(0)} MiB per million users`);
    return before;
  };
  const perMillion = (bytes) => `${(bytes / users).toFixed(0)} bytes per user, ${((bytes / users) * 1_000_000 / 1048576).toFixed(0)} MiB per million users`;
  await scenario('failed logins', 'wrong_password');
  const empty = await scenario('successful logins', 'right_password');
  // login_ip lasts a minute; known_source stays 30 days: what a month of active users keeps.
  for await (const batch of admin.scanStream({ match: `${prefix}login_ip:*`, count: 1000 })) if (batch.length > 0) await admin.unlink(...batch);
  console.log(`  known_source alone (kept 30 days): used_memory ${perMillion((await usedMemory()) - empty)}`);
  await link.close();
} finally {
  admin.disconnect();
  server.kill('SIGKILL');
}
