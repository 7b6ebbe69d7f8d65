import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/** What a serving replica announces, in seconds: its JWKS_MAX_AGE, KEY_RELOAD_INTERVAL and ACCESS_TOKEN_TTL. */
export interface ReplicaSettings {
  readonly jwksMaxAge: number;
  readonly keyReloadInterval: number;
  readonly accessTokenTtl: number;
}

/**
 * A replica's settings, stamped with the database's now(). Replicas with the same settings share
 * one row, so the table holds one row per configuration, not per process.
 */
export async function announceReplicaSettings(db: Kysely<Database>, settings: ReplicaSettings): Promise<void> {
  await db
    .insertInto('replica_settings')
    .values({
      jwks_max_age: settings.jwksMaxAge,
      key_reload_interval: settings.keyReloadInterval,
      access_token_ttl: settings.accessTokenTtl,
      announced_at: sql<Date>`now()`,
    })
    .onConflict((oc) => oc.columns(['jwks_max_age', 'key_reload_interval', 'access_token_ttl']).doUpdateSet({ announced_at: sql<Date>`now()` }))
    .execute();
}

/**
 * An announcement is in force while what it describes may still be out there: a replica that
 * announced last at t served (and signed) until at most t + 2 reload intervals (one pass may be
 * missed), a verifier may hold a JWKS it served for jwks_max_age after that, and a token it signed
 * lives access_token_ttl. Measured on the database's clock only, plus `marginSeconds`.
 */
const inForce = (marginSeconds: number) =>
  sql<boolean>`announced_at + interval '1 second' * (2 * key_reload_interval + greatest(jwks_max_age, access_token_ttl) + ${marginSeconds}) >= now()`;

export async function findReplicaSettingsInForce(db: Kysely<Database>, marginSeconds: number): Promise<ReplicaSettings[]> {
  const rows = await db
    .selectFrom('replica_settings')
    .select(['jwks_max_age', 'key_reload_interval', 'access_token_ttl'])
    .where(inForce(marginSeconds))
    .execute();
  return rows.map((row) => ({ jwksMaxAge: row.jwks_max_age, keyReloadInterval: row.key_reload_interval, accessTokenTtl: row.access_token_ttl }));
}

/** Announcements nobody can be relying on any more: a configuration no replica runs. */
export async function deleteReplicaSettingsOutOfForce(db: Kysely<Database>, marginSeconds: number): Promise<void> {
  await db.deleteFrom('replica_settings').where(sql<boolean>`not (${inForce(marginSeconds)})`).execute();
}
