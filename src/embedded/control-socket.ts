import { chmod, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';

/**
 * How `tessera users create ...` works while `tessera serve` holds the embedded database: the
 * server listens on a Unix socket in DATA_DIR (mode 0600, so only the same OS user can connect),
 * and the CLI sends it the command line and its stdin, one JSON line each way. The server runs the
 * very same command code against its open database. With DATABASE_URL none of this is used.
 */
export interface ControlRequest {
  readonly argv: readonly string[];
  readonly stdin: string | undefined;
}

export interface ControlResponse {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Unix socket paths are limited to about 107 bytes; past that the kernel would truncate the path. */
const MAX_SOCKET_PATH_BYTES = 100;

export function controlSocketPath(dataDir: string): string {
  const path = join(resolve(dataDir), 'control.sock');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`DATA_DIR is too long for its control socket (${path} is over ${MAX_SOCKET_PATH_BYTES} bytes); use a shorter path`);
  }
  return path;
}

export async function listenControlSocket(
  dataDir: string,
  run: (request: ControlRequest) => Promise<ControlResponse>,
  log: Logger,
): Promise<Server> {
  const path = controlSocketPath(dataDir);
  await unlink(path).catch(() => undefined); // a socket file left by a process that died
  const server = createServer((socket) => {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_MESSAGE_BYTES) {
        socket.destroy();
        return;
      }
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      socket.pause();
      let request: ControlRequest;
      try {
        request = JSON.parse(buffered.slice(0, newline)) as ControlRequest;
      } catch {
        socket.destroy();
        return;
      }
      void run(request)
        .catch((error: unknown): ControlResponse => {
          log.error({ err: error }, 'control command failed');
          return { exitCode: 1, stdout: '', stderr: 'error: the command failed inside the server; see its log\n' };
        })
        .then((response) => socket.end(`${JSON.stringify(response)}\n`));
    });
  });
  // Created under umask 077, so the socket is never reachable by others, not even for a moment.
  const umask = process.umask(0o077);
  try {
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(path, () => done());
    });
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);
  return server;
}

/** Undefined when no server is listening (nothing there, or a stale socket file). */
export function sendControlRequest(dataDir: string, request: ControlRequest): Promise<ControlResponse | undefined> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(controlSocketPath(dataDir));
    let buffered = '';
    let connected = false;
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
    });
    socket.on('end', () => {
      try {
        resolve(JSON.parse(buffered) as ControlResponse);
      } catch {
        reject(new Error('the running server gave no answer'));
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (!connected && (error.code === 'ENOENT' || error.code === 'ECONNREFUSED')) resolve(undefined);
      else reject(error);
    });
  });
}
