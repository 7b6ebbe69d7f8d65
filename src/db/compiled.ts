import { type Compilable, type CompiledQuery, createQueryId, type Kysely, type QueryResult } from 'kysely';
import type { Database } from './schema.js';

/** Stands where a bound value goes while the query is compiled; replaced by the value at each run. */
class Slot {
  constructor(readonly name: string) {}
}

type Values = Readonly<Record<string, unknown>>;

/**
 * A query of the request path, built with Kysely once and compiled once; each run only binds its
 * values. Building and compiling a query cost more of a refresh's CPU than the driver's work on the
 * wire (BENCHMARKS.md, profiles), and for these queries the SQL text never changes, only the values.
 * `build` gets `value(name)`, which it puts wherever a bound value goes (never into the SQL text:
 * a Slot compiles to a placeholder like any value); `run(db, values)` binds them by name.
 *
 * The text is compiled by the first `db` that runs it: PostgreSQL and the embedded PGlite share
 * Kysely's PostgreSQL compiler, and a transaction compiles as its database does.
 */
export function compileOnce<V extends Values, R>(
  build: (db: Kysely<Database>, value: <K extends keyof V & string>(name: K) => V[K]) => Compilable<R>,
): { run(db: Kysely<Database>, values: V): Promise<QueryResult<R>> } {
  let compiled: CompiledQuery<R> | undefined;
  return {
    run(db, values) {
      compiled ??= build(db, (name) => new Slot(name) as never).compile();
      const parameters = compiled.parameters.map((parameter) => {
        if (!(parameter instanceof Slot)) return parameter;
        if (!(parameter.name in values)) throw new Error(`no value for ${parameter.name}`);
        return values[parameter.name];
      });
      return db.executeQuery<R>({ query: compiled.query, queryId: createQueryId(), sql: compiled.sql, parameters });
    },
  };
}
