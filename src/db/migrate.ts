import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Kysely, type Migration, type MigrationResultSet, Migrator, sql } from 'kysely';

/** `migrations/` beside `src/` (and `dist/migrations` beside `dist/src` once built). */
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
/** Kysely's bookkeeping table: one row per applied migration, by name. */
const MIGRATION_TABLE = 'kysely_migration';

/**
 * The migrations this release knows: the timestamped files in migrations/, by name without the
 * extension. Kysely's FileMigrationProvider would do the same, but its import() runs inside
 * node_modules, where the test runner does not compile TypeScript.
 */
export async function readKnownMigrations(): Promise<Record<string, Migration>> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((file) => /\.(js|ts)$/.test(file) && !file.endsWith('.d.ts')).sort();
  const migrations: Record<string, Migration> = {};
  for (const file of files) {
    migrations[file.replace(/\.(js|ts)$/, '')] = (await import(pathToFileURL(`${MIGRATIONS_DIR}${file}`).href)) as Migration;
  }
  return migrations;
}

/** Where a database stands against this release's migrations, each list in name order. */
export interface MigrationStatus {
  /** Known to this release and applied. */
  readonly applied: readonly string[];
  /** Known to this release and not applied yet: the database is older than this release needs. */
  readonly pending: readonly string[];
  /** Applied, by a newer release (migrations only add: migrations/README.md), and unknown to this one. */
  readonly unknown: readonly string[];
}

/** The names the database records as applied; none before the first migration made the table. */
async function readAppliedNames(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ exists: boolean }>`select to_regclass(${MIGRATION_TABLE}) is not null as exists`.execute(db);
  if (!rows[0]?.exists) return [];
  const applied = await db.selectFrom(MIGRATION_TABLE).select('name').execute();
  return applied.map((row: { name: string }) => row.name);
}

export async function readMigrationStatus(db: Kysely<any>, known?: Record<string, Migration>): Promise<MigrationStatus> {
  const names = Object.keys(known ?? (await readKnownMigrations())).sort();
  const applied = new Set(await readAppliedNames(db));
  return {
    applied: names.filter((name) => applied.has(name)),
    pending: names.filter((name) => !applied.has(name)),
    unknown: [...applied].filter((name) => !names.includes(name)).sort(),
  };
}

export interface MigrationOutcome {
  readonly applied: readonly string[];
  /** Migrations a newer release applied, which this one does not know (and leaves alone). */
  readonly unknown: readonly string[];
}

/**
 * Applies every pending migration. Kysely's PostgreSQL adapter holds a session advisory lock
 * (pg_advisory_lock) for the whole run and applies them in one transaction, so replicas that
 * start together run them once and the others wait, then find nothing to do.
 *
 * A database a newer release migrated (a rollback, an old pod restarting during a rollout) records
 * migrations this release does not have, which Kysely refuses as "corrupted". Those migrations only
 * added to the schema (migrations/README.md), so this release can serve on it: each is handed to
 * Kysely as already applied, and never run. Another replica may apply one more between the read
 * and the lock: then the names are read again.
 */
export async function migrateToLatest(db: Kysely<any>, known?: Record<string, Migration>): Promise<MigrationOutcome> {
  const migrations = known ?? (await readKnownMigrations());
  for (let attempt = 1; ; attempt++) {
    const { unknown } = await readMigrationStatus(db, migrations);
    const stand = Object.fromEntries(unknown.map((name) => [name, appliedElsewhere(name)]));
    const migrator = new Migrator({ db, provider: { getMigrations: async () => ({ ...migrations, ...stand }) } });
    const result: MigrationResultSet = await migrator.migrateToLatest();
    if (!result.error) {
      return { applied: (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName), unknown };
    }
    if (attempt < 3 && /previously executed migration .* is missing/.test(String(result.error))) continue;
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '(setup)'} failed: ${String(result.error)}`, { cause: result.error });
  }
}

/** A newer release's migration, as this release sees it: applied, with nothing it could run. */
function appliedElsewhere(name: string): Migration {
  return {
    up: () => Promise.reject(new Error(`migration ${name} belongs to a newer release and cannot run here`)),
  };
}
