import { readMigrationStatus } from '../db/migrate.js';
import { command, CommandError, printTable } from './command.js';

/**
 * `tessera migrate status`: where the database stands against this release. It never migrates,
 * and exits 1 while migrations are pending, so that a release step or a script can wait on it.
 */
export const migrateStatus = command(
  {
    summary: 'list applied, pending and unknown migrations',
    details:
      'Pending: known to this release and not applied yet (tessera migrate or serve applies them); exits 1 while there are any. Unknown: applied by a newer release; this one serves without them (migrations/README.md).',
  },
  async ({ options }, ctx) => {
    const status = await readMigrationStatus(ctx.db);
    if (options.json) ctx.out(`${JSON.stringify(status)}\n`);
    else {
      const rows = (['applied', 'pending', 'unknown'] as const).flatMap((state) => status[state].map((migration) => ({ migration, status: state })));
      printTable(ctx, false, rows.sort((a, b) => a.migration.localeCompare(b.migration)));
    }
    if (status.pending.length > 0) {
      throw new CommandError(`${status.pending.length} pending migration(s): run tessera migrate (tessera serve also applies them)`);
    }
  },
);
