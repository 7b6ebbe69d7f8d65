import type { Kysely } from 'kysely';
import { findClientById } from '../db/clients.js';
import type { Listen } from '../db/notifications.js';
import type { Client, Database } from '../db/schema.js';

/** Announced by a trigger on `clients` (migrations/20261122020000_client_changes.ts). */
export const CLIENT_CHANGES_CHANNEL = 'tessera_client_changes';
/** Clients are few (one per gateway or service); this only bounds a misconfiguration. */
const MAX_ENTRIES = 10_000;

/** Clients by id, as client authentication needs them on every token, refresh, introspection and revocation request. */
export interface ClientLookup {
  find(id: string): Promise<Client | undefined>;
  /** This process changed the client: its next lookup must not wait for the notification. */
  forget(id: string): void;
}

/**
 * Client lookups that keep the clients they found, so that an authenticated request does not
 * spend a database round trip on a row that almost never changes. PostgreSQL announces every
 * change (a trigger NOTIFYs the client's id) and the entry is dropped when it arrives, within
 * milliseconds. Entries are kept only while that channel is proven to deliver
 * (src/db/notifications.ts): when it is lost, everything kept is dropped and every lookup reads
 * the database until it is back. Unknown ids are never kept: inventing them costs the inventor a
 * lookup each, and costs this process no memory.
 *
 * A lookup that started before a change and ends after its notification must not keep what it
 * read: every notification moves `generation` on, and a result is kept only if it has not moved.
 */
export function createClientLookup(db: Kysely<Database>, listen: Listen): ClientLookup {
  const kept = new Map<string, Client>();
  let live = false;
  let generation = 0;
  const drop = (id: string | undefined) => {
    generation += 1;
    if (id === undefined) kept.clear();
    else kept.delete(id);
  };
  listen(CLIENT_CHANGES_CHANNEL, {
    listening: () => {
      drop(undefined); // changes made while nobody listened were not announced to this process
      live = true;
    },
    notification: (id) => drop(id === '*' ? undefined : id),
    lost: () => {
      live = false;
      drop(undefined);
    },
  });

  return {
    async find(id) {
      const hit = kept.get(id);
      if (hit !== undefined) return hit;
      const seen = generation;
      const client = await findClientById(db, id);
      if (client !== undefined && live && generation === seen) {
        if (kept.size >= MAX_ENTRIES) kept.clear();
        kept.set(id, client);
      }
      return client;
    },
    forget: drop,
  };
}
