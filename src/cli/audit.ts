import { AuditQueryError, listAuditEvents, readAuditFilter } from '../audit/reader.js';
import { CURSOR_KEY_PURPOSE } from '../cursor.js';
import { type Command, command, printTable, UsageError } from './command.js';

const MAX_LIST_LIMIT = 1000;

function limitOption(value: string): number {
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : 0;
  if (limit < 1 || limit > MAX_LIST_LIMIT) throw new UsageError(`--limit must be 1 to ${MAX_LIST_LIMIT}`);
  return limit;
}

/** `tessera audit list`: what GET /admin/audit answers, with the same filters and cursor. */
const list = command(
  {
    summary: 'list audit events, newest first',
    details:
      'The same events, filters and cursors as GET /admin/audit. Times are RFC 3339 (2026-12-06T10:00:00Z); --since is inclusive, --until exclusive. ' +
      'When there are more, the cursor of the next page is printed to standard error (with --json, as next_cursor).',
    options: {
      type: { value: 'EVENT', repeatable: true, help: 'only events of this type, such as login_failed (repeatable)' },
      'actor-type': { value: 'KIND', help: 'only events by user, client, cli or system' },
      actor: { value: 'ID', help: 'only events by this actor: a user id, a client id or an OS user' },
      subject: { value: 'ID', help: 'only events about this user id, client id, role or key id' },
      client: { value: 'ID', help: 'only events of this client_id' },
      since: { value: 'TIME', help: 'only events at or after TIME' },
      until: { value: 'TIME', help: 'only events before TIME' },
      limit: { value: 'N', parse: limitOption, help: `at most N events, 1 to ${MAX_LIST_LIMIT} (default 100)` },
      cursor: { value: 'CURSOR', help: 'the page after the one that printed this cursor' },
    },
  },
  async ({ options }, ctx) => {
    let page;
    try {
      const filter = readAuditFilter({
        types: options.type,
        actorType: options['actor-type'],
        actor: options.actor,
        subject: options.subject,
        client: options.client,
        since: options.since,
        until: options.until,
      });
      page = await listAuditEvents(ctx.db, ctx.keyRing.derive(CURSOR_KEY_PURPOSE), filter, { limit: options.limit ?? 100, cursor: options.cursor });
    } catch (error) {
      // The names are the command line's: --actor-type, not actor_type.
      if (error instanceof AuditQueryError) throw new UsageError(error.message.replace(/^(\w+)/, (name) => `--${name.replace('_', '-')}`));
      throw error;
    }
    if (options.json) return ctx.out(`${JSON.stringify(page)}\n`);
    printTable(
      ctx,
      false,
      page.items.map((event) => ({
        time: event.time,
        type: event.type,
        actor: event.actor.id === null ? event.actor.type : `${event.actor.type}:${event.actor.id}`,
        subject: event.subject,
        client: event.client_id,
        ip: event.ip,
        details: JSON.stringify(event.details),
      })),
    );
    if (page.next_cursor !== null) ctx.err(`more: tessera audit list --cursor ${page.next_cursor}\n`);
  },
);

export const auditCommands: Record<string, Command> = { list };
