#!/usr/bin/env node
import cluster from 'node:cluster';
import { inspect } from 'node:util';
import { superviseWorkers } from '../cluster.js';
import { type Config, ConfigError, type Env, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { readPackageVersion } from '../package-root.js';
import { startTelemetry } from '../telemetry/start.js';

// The only module that touches process.env, process.argv and the standard streams.

/**
 * The first SIGTERM or SIGINT starts a graceful stop; a second one skips its SHUTDOWN_DELAY
 * (src/cli/run.ts). After that the handlers are gone: a third ends the process at once.
 */
function countStopSignals(): { first: Promise<string>; second: Promise<string> } {
  const waiting: ((signal: string) => void)[] = [];
  const first = new Promise<string>((resolve) => waiting.push(resolve));
  const second = new Promise<string>((resolve) => waiting.push(resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    waiting.shift()?.(signal);
    if (waiting.length === 0) for (const each of STOP_SIGNALS) process.off(each, onSignal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  return { first, second };
}
const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const { first: stopSignal, second: hurrySignal } = countStopSignals();

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * `tessera serve` with WEB_CONCURRENCY above 1, in the primary: the configuration it supervises
 * with. This process then only supervises (src/cluster.ts) and never loads the service itself, so
 * it costs a bare Node process. Anything else, a bad configuration included, goes to runCli.
 */
function supervising(argv: readonly string[], env: Env): Config | undefined {
  if (!cluster.isPrimary || argv.length !== 1 || argv[0] !== 'serve') return undefined;
  try {
    const config = loadConfig(env);
    return config.webConcurrency > 1 ? config : undefined;
  } catch (error) {
    if (error instanceof ConfigError) return undefined; // runCli reports it
    throw error;
  }
}

try {
  const argv = process.argv.slice(2);
  const supervised = supervising(argv, process.env);
  // Tracing starts before the service is imported (its instrumentations hook pg, ioredis and
  // node:http as they load), and only in a process that serves: not in a supervising primary,
  // not for one-shot commands.
  const telemetry = !supervised && argv.length === 1 && argv[0] === 'serve' ? await startTelemetry(process.env, readPackageVersion()) : undefined;
  const code = supervised
    ? await superviseWorkers(supervised.webConcurrency, createLogger(supervised.logLevel), stopSignal, hurrySignal)
    : await (await import('./run.js')).runCli(argv, process.env, {
        readStdin,
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
        stopSignal,
        hurrySignal,
        tracing: telemetry?.tracing ?? false,
      });
  await telemetry?.shutdown();
  // Let stdout drain, then leave even if a library keeps a timer alive.
  process.stdout.write('', () => process.exit(code));
} catch (error) {
  process.stderr.write(`fatal: ${error instanceof Error ? error.message : inspect(error)}\n`);
  process.exit(1);
}
