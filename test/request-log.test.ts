import { hostname } from 'node:os';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { startTestService, testEnv, type TestService } from './helpers/service.js';

let database: TestDatabase;
let env: Env;
beforeAll(async () => {
  database = await createTestDatabase();
  env = testEnv(database);
});
afterAll(async () => {
  await database?.drop();
});

/** The request lines `service` logged for `paths`, fetched in turn. */
async function requestLines(service: TestService, paths: readonly string[]) {
  const before = service.logs.entries().length;
  for (const path of paths) await request(service.app).get(path).set('X-Request-Id', `probe-${path.slice(1, 7)}`);
  return service.logs
    .entries()
    .slice(before)
    .filter((entry) => entry['req'] !== undefined)
    .map((entry) => ({ level: entry['level'], msg: entry['msg'], path: (entry['req'] as { path: string }).path, status: (entry['res'] as { status: number }).status }));
}

describe('the request log', () => {
  it('logs health probes at debug only, and every other request at info', async () => {
    const atInfo = await startTestService(database, { env: { ...env, LOG_LEVEL: 'info' } });
    try {
      expect(await requestLines(atInfo, ['/healthz', '/readyz', '/.well-known/jwks.json', '/nope'])).toEqual([
        { level: 'info', msg: 'request completed', path: '/.well-known/jwks.json', status: 200 },
        { level: 'info', msg: 'request completed', path: '/nope', status: 404 },
      ]);
    } finally {
      await atInfo.close();
    }
    const atDebug = await startTestService(database, { env: { ...env, LOG_LEVEL: 'debug' } });
    try {
      expect(await requestLines(atDebug, ['/healthz', '/readyz'])).toEqual([
        { level: 'debug', msg: 'health probe', path: '/healthz', status: 200 },
        { level: 'debug', msg: 'health probe', path: '/readyz', status: 200 },
      ]);
    } finally {
      await atDebug.close();
    }
  });

  it('writes one line per request with request_id, hostname and pid, every field name in snake_case', async () => {
    const service = await startTestService(database, { env });
    try {
      const res = await request(service.app).get('/.well-known/jwks.json?x=1').set('X-Request-Id', 'fields-1');
      expect(res.headers['x-request-id']).toBe('fields-1');
      const line = service.logs.entries().find((entry) => entry['request_id'] === 'fields-1')!;
      expect(line).toEqual({
        level: 'info',
        time: expect.any(String),
        service: 'tessera',
        hostname: hostname(),
        pid: process.pid,
        request_id: 'fields-1',
        req: { method: 'GET', path: '/.well-known/jwks.json' },
        res: { status: 200 },
        response_time: expect.any(Number),
        msg: 'request completed',
      });
      // Every line this service wrote, start-up included: no camelCase key anywhere in it, and no
      // trace ids while tracing is off.
      const keys = (value: unknown): string[] =>
        typeof value === 'object' && value !== null ? Object.entries(value).flatMap(([key, inner]) => [key, ...keys(inner)]) : [];
      const names = new Set(service.logs.entries().flatMap((entry) => keys({ ...entry, err: undefined })));
      expect([...names].filter((name) => !/^[a-z0-9_]+$/.test(name))).toEqual([]);
      expect(names.has('trace_id')).toBe(false);
    } finally {
      await service.close();
    }
  });
});
