#!/usr/bin/env node
import { inspect } from 'node:util';
import { runCli } from './run.js';

// The only module that touches process.env, process.argv and the standard streams.
const stopSignal = new Promise<string>((resolve) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
});

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

try {
  const code = await runCli(process.argv.slice(2), process.env, {
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
