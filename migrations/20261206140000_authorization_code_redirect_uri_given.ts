import type { Kysely } from 'kysely';

// RFC 6749 §4.1.3: redirect_uri is REQUIRED at the token endpoint when the authorization request
// named it, so a code records whether it did. Expand-only: a nullable column the previous release
// never names (null, on a code made before this, reads as given: the strict reading).

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('authorization_codes').addColumn('redirect_uri_given', 'boolean').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('authorization_codes').dropColumn('redirect_uri_given').execute();
}
