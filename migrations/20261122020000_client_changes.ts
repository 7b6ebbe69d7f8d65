import { type Kysely, sql } from 'kysely';

// Every change to a client is announced on the tessera_client_changes channel with its id ('*' for
// a truncate), so that the processes that keep clients they have looked up (src/auth/client-cache.ts)
// forget them at once, whoever made the change: the admin API, the CLI, another replica, plain SQL.

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function tessera_client_changed() returns trigger language plpgsql as $$
    begin
      if tg_op = 'TRUNCATE' then
        perform pg_notify('tessera_client_changes', '*');
        return null;
      end if;
      -- (A new client needs no announcement: an id nobody has is never kept.)
      perform pg_notify('tessera_client_changes', old.id);
      if tg_op = 'UPDATE' and new.id <> old.id then perform pg_notify('tessera_client_changes', new.id); end if;
      return null;
    end
    $$`.execute(db);
  await sql`create trigger clients_changed after update or delete on clients for each row execute function tessera_client_changed()`.execute(db);
  await sql`create trigger clients_truncated after truncate on clients for each statement execute function tessera_client_changed()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger clients_truncated on clients`.execute(db);
  await sql`drop trigger clients_changed on clients`.execute(db);
  await sql`drop function tessera_client_changed()`.execute(db);
}
