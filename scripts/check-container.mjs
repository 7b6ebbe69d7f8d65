#!/usr/bin/env node
// Keeps the Dockerfile and docker-compose.yml honest on machines without a Docker engine:
// 1. lints the Dockerfile (dockerfile-utils) and validates the compose file (docker-compose config -q);
// 2. replays the Dockerfile: each stage's WORKDIR, COPY and RUN, in a scratch directory per
//    stage, with the image's Node major on PATH (from the npm registry's node@<major> package);
// 3. runs the final stage's ENTRYPOINT + CMD: without DATABASE_URL it must refuse (exit 78, as the
//    image's NODE_ENV=production asks); on a throwaway PostgreSQL database (TEST_ADMIN_DATABASE_URL's
//    server, as for the tests) it must pass its HEALTHCHECK command, then exit 0 on SIGTERM.
// Usage: node scripts/check-container.mjs   (from the repository root)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';

const repo = process.cwd();
const run = (command, args, options = {}) => execFileSync(command, args, { stdio: 'inherit', ...options });
const step = (text) => console.log(`\n== ${text}`);
const adminUrl = process.env.TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

step('lint the Dockerfile');
run('npx', ['-y', 'dockerfile-utils@0.16.3', 'lint', 'Dockerfile']);

step('validate docker-compose.yml');
run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], {
  env: { ...process.env, KEY_ENCRYPTION_KEYS: 'placeholder', POSTGRES_PASSWORD: 'placeholder' },
});

// --- parse the Dockerfile (the subset it uses: ARG, FROM .. AS, WORKDIR, ENV, COPY [--from] [--chown], RUN, HEALTHCHECK, ENTRYPOINT, CMD)
const lines = readFileSync('Dockerfile', 'utf8').replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const args = {};
const stages = [];
for (const line of lines) {
  const [instruction, ...rest] = line.split(' ');
  const body = rest.join(' ');
  if (instruction === 'ARG' && stages.length === 0) {
    const [name, value] = body.split('=');
    args[name] = value;
  } else if (instruction === 'FROM') {
    const [image, , name] = body.split(' ');
    stages.push({ image: image.replace(/\$\{(\w+)\}/g, (_, n) => args[n]), name, steps: [] });
  } else {
    stages.at(-1).steps.push({ instruction, body });
  }
}
const image = stages.at(-1).image;
const major = /node:(\d+)/.exec(image)?.[1];
if (!major) throw new Error(`cannot tell the Node major of ${image}`);

step(`Node ${major}, as in ${image}`);
const nodePath = execFileSync('npx', ['-y', '-p', `node@${major}`, 'node', '-e', 'process.stdout.write(process.execPath)']).toString();
const env = { ...process.env, PATH: `${dirname(nodePath)}:${process.env.PATH}` };
run('node', ['--version'], { env });

const scratch = mkdtempSync(join(tmpdir(), 'tessera-image-'));
// The build context is what is committed (git archive HEAD), not whatever the working tree holds.
const root = join(scratch, 'context');
mkdirSync(root);
execFileSync('sh', ['-c', `git -C "${repo}" archive HEAD | tar -x -C "${root}"`]);
const dirs = {};
let database;
let entrypoint;
let cmd;
let healthcheck;
try {
  for (const stage of stages) {
    const base = join(scratch, stage.name ?? 'final');
    let workdir = base;
    const stageEnv = { ...env };
    dirs[stage.name] = base;
    for (const { instruction, body } of stage.steps) {
      if (instruction === 'WORKDIR') {
        workdir = join(base, body);
        mkdirSync(workdir, { recursive: true });
      } else if (instruction === 'ENV') {
        for (const [, k, v] of body.matchAll(/(\w+)=(\S+)/g)) stageEnv[k] = v.startsWith('/') ? join(base, v) : v;
      } else if (instruction === 'COPY') {
        const parts = body.split(' ').filter((p) => !p.startsWith('--chown'));
        const from = parts[0].startsWith('--from=') ? parts.shift().slice('--from='.length) : undefined;
        const dest = resolve(workdir, parts.pop());
        for (const source of parts) {
          // Absolute paths in the image live under the stage's scratch root.
          const origin = from ? join(dirs[from], source) : join(root, source);
          const target = parts.length > 1 || dest.endsWith('/') ? join(dest, source.split('/').pop()) : dest;
          cpSync(origin, target, { recursive: true });
        }
      } else if (instruction === 'RUN') {
        // System set-up (users, ownership) needs root in an image; here only the project's own commands run.
        if (/^(mkdir|chown|useradd|apt-get)\b/.test(body)) continue;
        step(`RUN ${body}`);
        run('sh', ['-c', body], { cwd: workdir, env: stageEnv });
      } else if (instruction === 'ENTRYPOINT') entrypoint = JSON.parse(body);
      else if (instruction === 'CMD') cmd = JSON.parse(body);
      else if (instruction === 'HEALTHCHECK') healthcheck = JSON.parse(body.slice(body.indexOf('CMD ') + 4));
    }
    stage.workdir = () => workdir;
    stage.env = stageEnv;
  }

  const final = stages.at(-1);
  step('the final stage holds production dependencies only');
  // (@types/node is no longer a sign: @opentelemetry/instrumentation-pg and protobufjs, production
  // dependencies of the tracing, depend on it. The peers of `npm run bench -- --peers` are.)
  for (const devOnly of ['typescript', 'vitest', 'supertest', 'oidc-provider', '@node-oauth/oauth2-server']) {
    if (existsSync(join(final.workdir(), 'node_modules', devOnly))) throw new Error(`${devOnly} (a dev dependency) is in the final stage`);
  }
  const port = await new Promise((done) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = probe.address();
      probe.close(() => done(p));
    });
  });
  const serveEnv = { ...final.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: join(scratch, 'data'), LOG_LEVEL: 'warn' };
  const [command, ...commandArgs] = [...entrypoint, ...cmd];

  step(`${[...entrypoint, ...cmd].join(' ')} without DATABASE_URL refuses to start`);
  const refused = spawnSync(command, commandArgs, { cwd: final.workdir(), env: serveEnv, encoding: 'utf8', timeout: 30_000 });
  if (refused.status !== 78) throw new Error(`without DATABASE_URL it exited with ${refused.status ?? refused.signal}, not 78: ${refused.stderr}`);

  database = `tessera_image_${randomBytes(6).toString('hex')}`;
  await admin(adminUrl, `create database ${database}`);
  const databaseUrl = new URL(adminUrl);
  databaseUrl.pathname = `/${database}`;
  serveEnv.DATABASE_URL = databaseUrl.toString();
  serveEnv.KEY_ENCRYPTION_KEYS = randomBytes(32).toString('base64');
  step(`${[...entrypoint, ...cmd].join(' ')} on port ${port}, database ${database}`);
  const server = spawn(command, commandArgs, { cwd: final.workdir(), env: serveEnv, stdio: 'inherit' });
  const exited = new Promise((done) => server.once('exit', (code, signal) => done({ code, signal })));

  let healthy = false;
  for (let i = 0; i < 60 && !healthy; i++) {
    await new Promise((r) => setTimeout(r, 500));
    try {
      execFileSync(healthcheck[0], healthcheck.slice(1), { env: serveEnv, stdio: 'ignore' });
      healthy = true;
    } catch {
      // not yet
    }
  }
  server.kill('SIGTERM');
  const { code, signal } = await exited;
  if (!healthy) throw new Error('the HEALTHCHECK never passed');
  if (code !== 0) throw new Error(`after SIGTERM the service exited with ${code ?? signal}, not 0`);
  step('the image builds, passes its HEALTHCHECK and stops cleanly on SIGTERM');
} finally {
  rmSync(scratch, { recursive: true, force: true });
  if (database) await admin(adminUrl, `drop database if exists ${database} with (force)`);
}

async function admin(url, statement) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
