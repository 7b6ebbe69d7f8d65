import { type Kysely, sql } from 'kysely';
import type { Client, ClientUpdate, Database, GrantType, NewClient } from './schema.js';

export async function findClientById(db: Kysely<Database>, id: string): Promise<Client | undefined> {
  return db.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The client, locked until the caller's transaction ends: changes are checked against what they replace. */
export async function lockClient(db: Kysely<Database>, id: string): Promise<Client | undefined> {
  return db.selectFrom('clients').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export async function updateClient(db: Kysely<Database>, id: string, changes: ClientUpdate): Promise<Client | undefined> {
  return db.updateTable('clients').set(changes).where('id', '=', id).returningAll().executeTakeFirst();
}

export async function insertClient(db: Kysely<Database>, client: NewClient): Promise<Client> {
  return db.insertInto('clients').values(client).returningAll().executeTakeFirstOrThrow();
}

export async function listClients(db: Kysely<Database>): Promise<Client[]> {
  return db.selectFrom('clients').selectAll().orderBy('id').execute();
}

/** A page of clients in id order after `after`, optionally only those with a grant or of a type. */
export async function pageClients(
  db: Kysely<Database>,
  page: { readonly limit: number; readonly after?: string | undefined; readonly grantType?: string | undefined; readonly type?: string | undefined },
): Promise<Client[]> {
  let query = db.selectFrom('clients').selectAll().orderBy('id').limit(page.limit);
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  if (page.grantType !== undefined) query = query.where(sql<boolean>`${page.grantType} = any(grant_types)`);
  if (page.type !== undefined) query = query.where('type', '=', page.type as Client['type']);
  return query.execute();
}

export async function deleteClient(db: Kysely<Database>, id: string): Promise<boolean> {
  const result = await db.deleteFrom('clients').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** Only confidential clients have a secret to rotate. */
export async function updateClientSecretHash(db: Kysely<Database>, id: string, secretHash: string, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('clients')
    .set({ secret_hash: secretHash, updated_at: now })
    .where('id', '=', id)
    .where('type', '=', 'confidential')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Whether the client exists, may grant `scope`, and may use one of `grantTypes`. */
export async function clientMayIssue(db: Kysely<Database>, clientId: string, scope: string, grantTypes: readonly GrantType[]): Promise<boolean> {
  const row = await db
    .selectNoFrom(
      sql<boolean>`exists(select 1 from clients where id = ${clientId} and ${scope} = any(allowed_scopes) and grant_types && ${[...grantTypes]}::text[])`.as('may'),
    )
    .executeTakeFirstOrThrow();
  return row.may;
}
