#!/usr/bin/env node
import cluster from 'node:cluster';
import { inspect } from 'node:util';
import { superviseWorkers } from '../cluster.js';
import { type Config, ConfigError, type Env, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';

// The only module that touches process.env, process.argv and the standard streams.
const stopSignal = new Promise<string>((resolve) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
});

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
  const code = supervised
    ? await superviseWorkers(supervised.webConcurrency, createLogger(supervised.logLevel), stopSignal)
    : await (await import('./run.js')).runCli(argv, process.env, {
        readStdin,
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
        stopSignal,
      });
  // Let stdout drain, then leave even if a library keeps a timer alive.
  process.stdout.write('', () => process.exit(code));
} catch (error) {
  process.stderr.write(`fatal: ${error instanceof Error ? error.message : inspect(error)}\n`);
  process.exit(1);
}
