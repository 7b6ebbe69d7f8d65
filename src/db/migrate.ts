import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Kysely, type Migration, type MigrationProvider, type MigrationResultSet, Migrator } from 'kysely';

/** `migrations/` beside `src/` (and `dist/migrations` beside `dist/src` once built). */
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/**
 * Reads the timestamped files in migrations/. Kysely's FileMigrationProvider would do the same,
 * but its import() runs inside node_modules, where the test runner does not compile TypeScript.
 */
const directoryProvider: MigrationProvider = {
  async getMigrations() {
    const files = (await readdir(MIGRATIONS_DIR))
      .filter((file) => /\.(js|ts)$/.test(file) && !file.endsWith('.d.ts'))
      .sort();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      migrations[file.replace(/\.(js|ts)$/, '')] = (await import(
        pathToFileURL(`${MIGRATIONS_DIR}${file}`).href
      )) as Migration;
    }
    return migrations;
  },
};

export interface MigrationOutcome {
  readonly applied: readonly string[];
}

/**
 * Applies every pending migration. Kysely's PostgreSQL adapter holds a session advisory lock
 * (pg_advisory_lock) for the whole run and applies them in one transaction, so replicas that
 * start together run them once and the others wait, then find nothing to do.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<MigrationOutcome> {
  const migrator = new Migrator({ db, provider: directoryProvider });
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '(setup)'} failed: ${String(result.error)}`, {
      cause: result.error,
    });
  }
  return { applied: (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) };
}
