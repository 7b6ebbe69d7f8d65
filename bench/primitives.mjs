// The primitives that bound Tessera's endpoints, measured in the benchmark's own run: Argon2id
// verifies at the production parameters and concurrency, and RS256 signatures.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import argon2 from 'argon2';
import { SignJWT } from 'jose';

/** Runs `operation` from `concurrency` loops at once for `seconds`; returns completions per second. */
async function throughput(seconds, concurrency, operation) {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const loop = async () => {
    while (performance.now() < deadline) {
      await operation();
      done += 1;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return done / ((performance.now() - start) / 1000);
}

/**
 * Argon2id verifies of a known password at the server's parameters, `concurrency` at a time (the
 * server's ARGON2_MAX_CONCURRENCY): the most password grants per second this machine can verify.
 */
export async function argon2VerifyThroughput({ seconds, concurrency, memoryKib, iterations, parallelism }) {
  const hash = await argon2.hash('correct horse battery staple', {
    type: argon2.argon2id,
    memoryCost: memoryKib,
    timeCost: iterations,
    parallelism,
  });
  return throughput(seconds, concurrency, () => argon2.verify(hash, 'correct horse battery staple'));
}

/**
 * RS256 signatures of an access-token-sized JWT by one process. jose signs through WebCrypto, which
 * runs each signature on libuv's thread pool: one at a time uses one core, `concurrency` of them
 * (twice the cores) as many cores as the machine has.
 */
export async function rs256SignThroughput({ seconds, concurrency = 1 }) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const now = Math.floor(Date.now() / 1000);
  return throughput(seconds, concurrency, () =>
    new SignJWT({ client_id: 'bench-gateway', scope: 'profile orders:read', auth_time: now, sid: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'bench' })
      .setIssuer('http://127.0.0.1')
      .setSubject(randomUUID())
      .setAudience('tessera')
      .setJti(randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + 900)
      .sign(privateKey),
  );
}
