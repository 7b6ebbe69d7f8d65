import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { createPasswordHasher } from '../auth/passwords.js';
import { type Clock, systemClock } from '../clock.js';
import { type Config, ConfigError, type Env, loadConfig } from '../config.js';
import {
  type ControlRequest,
  type ControlResponse,
  controlSocketPath,
  listenControlSocket,
  sendControlRequest,
} from '../embedded/control-socket.js';
import { readMigrationStatus } from '../db/migrate.js';
import { waitForDatabase } from '../db/wait-for-database.js';
import { DataDirLockedError } from '../embedded/lock.js';
import type { KeyRing } from '../keys/key-encryption.js';
import { createLogger } from '../logger.js';
import { waitUnless } from '../wait.js';
import { listen, loadKeyRing, migrateDatabase, openConfiguredDatabase, prepareDeps } from '../service.js';
import type { Deps } from '../deps.js';
import { type CommandContext, EXIT } from './command.js';
import { runCommand } from './commands.js';
import { readCommandLine } from './help.js';
import { readsStdin } from './syntax.js';

export interface CliIo {
  readStdin(): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Resolves when the process is asked to stop (SIGTERM, SIGINT); only `serve` waits on it. */
  stopSignal?: Promise<string>;
  /** Resolves when it is asked again: `serve` then stops without waiting out SHUTDOWN_DELAY. */
  hurrySignal?: Promise<string>;
  /** True when OpenTelemetry tracing runs (src/telemetry/): log lines then name their trace and span. */
  tracing?: boolean;
  /** Where `serve` logs (stdout by default); tests capture it. */
  logDestination?: import('pino').DestinationStream;
}

/** The whole command line: parse, load config, dispatch. Returns the exit code. */
export async function runCli(argv: readonly string[], env: Env, io: CliIo, clock: Clock = systemClock): Promise<number> {
  // Help, wrong words and wrong arguments are answered before anything else: no configuration,
  // database, file, port or standard input, and nothing sent to a running server.
  const line = readCommandLine(argv);
  if ('exitCode' in line) return write(io, line);
  const command = line.name;

  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr(`${error.message}\n`);
    return EXIT.config;
  }

  try {
    if (command === 'serve') {
      return await serve(config, createLogger(config.logLevel, io.logDestination, { traceIds: io.tracing === true }), clock, io);
    }
    // One-shot commands log warnings only, to stderr, unless LOG_LEVEL asks for more.
    const log = createLogger(env['LOG_LEVEL'] ? config.logLevel : 'warn', io.logDestination ?? stderrDestination(io));
    // The server that gets the request parses argv again, against the same table (runCommand).
    const request: ControlRequest = { argv: [...argv], stdin: readsStdin(line.entry, line.parsed) ? await io.readStdin() : undefined };
    if (config.databaseUrl === undefined) {
      const forwarded = await sendControlRequest(config.dataDir, request);
      if (forwarded !== undefined) return write(io, forwarded);
    }
    return await runDirect(config, log, clock, request, io);
  } catch (error) {
    if (error instanceof DataDirLockedError) {
      io.stderr(
        command === 'serve'
          ? `error: DATA_DIR ${config.dataDir} is already served by process ${error.pid}\n`
          : `error: ${error.message} and it does not answer on its control socket; stop it or wait\n`,
      );
      return EXIT.failed;
    }
    throw error;
  }
}

/** A one-shot command on a database this process opens itself. */
async function runDirect(config: Config, log: Logger, clock: Clock, request: ControlRequest, io: CliIo): Promise<number> {
  const migrate = request.argv.length === 1 && request.argv[0] === 'migrate';
  // `migrate` as a release step (a Job, a compose service) may start with PostgreSQL, as serve does.
  if (migrate && config.databaseUrl !== undefined) await waitForDatabase(config.databaseUrl, log, config.databaseConnectTimeout);
  const handle = await openConfiguredDatabase(config, log);
  try {
    // The embedded database is migrated on first use; PostgreSQL only by `tessera migrate` or `serve`.
    // `migrate status` looks without migrating.
    const status = request.argv[0] === 'migrate' && !migrate;
    if (migrate || (handle.kind === 'embedded' && !status)) {
      const { applied } = await migrateDatabase(config, handle, log);
      if (migrate) {
        io.stdout(applied.length > 0 ? `applied: ${applied.join(', ')}\n` : 'no pending migrations\n');
        return EXIT.ok;
      }
    } else if (!status) {
      // Not allowed to migrate, this command cannot work on a schema older than it needs.
      const { pending } = await readMigrationStatus(handle.db);
      if (pending.length > 0) {
        io.stderr(`error: the database lacks migrations this release needs (${pending.join(', ')}): run tessera migrate first\n`);
        return EXIT.failed;
      }
    }
    const passwords = createPasswordHasher(config.argon2, { maxConcurrent: config.argon2MaxConcurrency, queueLimit: config.argon2QueueLimit });
    // `migrate status` reads one table, perhaps of a database not migrated yet, where the embedded
    // key ring could not be checked against the signing keys: it gets none.
    const keyRing = status ? NO_KEY_RING : await loadKeyRing(config, handle.db);
    return await runCommand(request.argv, commandContext({ config, db: handle.db, clock, log, passwords, keyRing }, request, io));
  } finally {
    await handle.close();
  }
}

const NO_KEY_RING: KeyRing = {
  encrypt: () => refuseKeyRing(),
  decrypt: () => refuseKeyRing(),
  derive: () => refuseKeyRing(),
};
function refuseKeyRing(): never {
  throw new Error('this command was given no key ring');
}

function commandContext(
  deps: Pick<Deps, 'config' | 'db' | 'clock' | 'log' | 'passwords' | 'keyRing'>,
  request: ControlRequest,
  io: Pick<CliIo, 'stdout' | 'stderr'>,
): CommandContext {
  return { ...deps, stdin: request.stdin, out: io.stdout, err: io.stderr };
}

/** Runs a forwarded command inside the serving process and captures what it prints. */
async function runForwarded(deps: Deps, request: ControlRequest): Promise<ControlResponse> {
  if (!Array.isArray(request.argv) || request.argv.some((arg) => typeof arg !== 'string')) {
    return { exitCode: EXIT.usage, stdout: '', stderr: 'error: malformed request\n' };
  }
  if (request.argv.length === 1 && request.argv[0] === 'migrate') return { exitCode: EXIT.ok, stdout: 'no pending migrations (the running server applied them)\n', stderr: '' };
  let stdout = '';
  let stderr = '';
  const exitCode = await runCommand(
    request.argv,
    commandContext(deps, request, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) }),
  );
  return { exitCode, stdout, stderr };
}

/**
 * `tessera serve`: until SIGTERM or SIGINT, then a graceful stop and exit 0. A load balancer (a
 * Kubernetes Service's endpoints, a target group) learns of the stop only through the readiness
 * probe, some seconds later, and sends new connections here meanwhile: for SHUTDOWN_DELAY the
 * server is not ready but goes on accepting and serving them, then it stops accepting and lets
 * in-flight requests finish within SHUTDOWN_TIMEOUT. A second signal skips what is left of the delay.
 */
async function serve(config: Config, processLog: Logger, clock: Clock, io: CliIo): Promise<number> {
  const stopSignal = io.stopSignal ?? new Promise<string>(() => undefined);
  // With WEB_CONCURRENCY above 1 this is a worker; its primary only supervises (src/cli/main.ts).
  const log = cluster.isWorker ? processLog.child({ worker: cluster.worker?.id }) : processLog;
  if (config.databaseUrl === undefined) controlSocketPath(config.dataDir); // a DATA_DIR too long for it fails now, not after migrating
  else if ((await waitForDatabase(config.databaseUrl, log, config.databaseConnectTimeout, stopSignal)) === 'stopped') {
    log.info('stopped before the database answered');
    return EXIT.ok;
  }
  const handle = await openConfiguredDatabase(config, log);
  let deps: Deps;
  try {
    deps = await prepareDeps(config, handle, log, clock);
  } catch (error) {
    await handle.close();
    throw error;
  }
  const control =
    handle.kind === 'embedded' ? await listenControlSocket(config.dataDir, (request) => runForwarded(deps, request), log) : undefined;
  const running = await listen(deps, async () => {
    await new Promise<void>((resolve) => (control ? control.close(() => resolve()) : resolve()));
    await handle.close();
  });
  log.info(
    { url: running.url, metrics_url: running.metricsUrl, issuer: config.issuer, database: handle.kind, rate_limits: config.redis ? 'redis' : 'memory', rate_limit_topology: config.redis?.topology ?? 'none' },
    'tessera is serving',
  );
  if (handle.kind === 'embedded') {
    log.info({ data_dir: config.dataDir }, 'embedded database: other tessera commands reach it through this server');
  }
  const signal = await stopSignal;
  running.drain();
  log.info({ signal, shutdown_delay: config.shutdownDelay }, 'shutting down');
  const hurried = await waitUnless(config.shutdownDelay * 1000, io.hurrySignal);
  if (hurried !== undefined) log.info({ signal: hurried }, 'second stop signal: no longer waiting out SHUTDOWN_DELAY');
  log.info({ shutdown_timeout: config.shutdownTimeout }, 'no longer accepting connections; finishing requests in flight');
  await running.close();
  log.info('stopped');
  return EXIT.ok;
}

function write(io: CliIo, response: ControlResponse): number {
  if (response.stdout) io.stdout(response.stdout);
  if (response.stderr) io.stderr(response.stderr);
  return response.exitCode;
}

function stderrDestination(io: CliIo): import('pino').DestinationStream {
  return { write: (line: string) => io.stderr(line) };
}
