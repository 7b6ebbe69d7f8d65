import { decodeProtectedHeader } from 'jose';
import { type Kysely, sql } from 'kysely';
import request from 'supertest';
import { expect } from 'vitest';
import type { Database } from '../../src/db/schema.js';
import { createTestClient, type TestService } from './service.js';

// The key lifecycle runs on the database's clock (src/keys/lifecycle.ts), which tests cannot fake.
// They make time pass for the keys instead: every time in the key table moves back, which is what
// the table would hold had the database's clock moved on. Data, not a mock; and no test date ever
// meets the real one, since only differences are used.

/** `seconds` pass for every signing key (negative: the times move forward). */
export async function ageSigningKeys(db: Kysely<Database>, seconds: number): Promise<void> {
  const by = sql`interval '1 second' * ${seconds}`;
  await sql`
    update signing_keys set created_at = created_at - ${by}, activated_at = activated_at - ${by},
      retired_at = retired_at - ${by}, activates_at = activates_at - ${by}`.execute(db);
}

/** The database's now(), in milliseconds. */
export async function databaseNow(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
  return rows[0]!.now.getTime();
}

/** Seconds from the database's now() until the next key's activation time (negative once it has passed). */
export async function secondsUntilActivation(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ wait: number }>`
    select extract(epoch from activates_at - now())::float8 as wait from signing_keys where state = 'next'`.execute(db);
  if (rows[0] === undefined) throw new Error('no next signing key is waiting');
  return rows[0].wait;
}

/** Ages the keys just far enough that the next key's activation time has come. */
export async function makeNextKeyDue(db: Kysely<Database>): Promise<void> {
  await ageSigningKeys(db, Math.max(0, await secondsUntilActivation(db)));
}

/**
 * Keeps the keys' times in step with a simulated clock (vi.useFakeTimers) that reads `simulatedStart`
 * now: after each `follow(t)`, the keys are as old as if the database's clock had moved exactly as
 * the simulated one did from `simulatedStart` to `t`, whatever real time went by meanwhile.
 */
export async function keysFollow(db: Kysely<Database>, simulatedStart: number): Promise<(simulatedNow: number) => Promise<void>> {
  const databaseStart = await databaseNow(db);
  let applied = 0;
  return async (simulatedNow) => {
    const wanted = simulatedNow - simulatedStart - ((await databaseNow(db)) - databaseStart);
    await ageSigningKeys(db, (wanted - applied) / 1000);
    applied = wanted;
  };
}

/** The kid of a token `service` signs now (a client_credentials token of a new client). */
export async function kidOfNewToken(service: TestService): Promise<string> {
  const client = await createTestClient(service, { grantTypes: ['client_credentials'] });
  const res = await request(service.app).post('/token').type('form').set('Authorization', client.basic).send({ grant_type: 'client_credentials' });
  expect(res.status).toBe(200);
  return decodeProtectedHeader(res.body.access_token).kid!;
}
