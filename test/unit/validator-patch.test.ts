/**
 * patches/express-openapi-validator+5.6.2.patch (applied by patch-package on install): the
 * validator no longer compiles the OpenAPI meta-schema unless the document is to be checked
 * against it (a third of a second of every start-up), and still checks it when asked; and it
 * compiles each route's path pattern once instead of on every request.
 */
import { createRequire } from 'node:module';
import { pino } from 'pino';
import { expect, it, vi } from 'vitest';
import { createApp } from '../../server/app.js';
import { createTestDatabase } from '../support/database.js';

const require = createRequire(import.meta.url);
const { OpenAPISchemaValidator } = require('express-openapi-validator/dist/framework/openapi.schema.validator.js') as {
  OpenAPISchemaValidator: new (options: { version: string; validateApiSpec: boolean }) => {
    _validator?: unknown;
    validate(doc: unknown): { errors: unknown[] };
  };
};

it('compiles the meta-schema only when a document is validated', () => {
  const validator = new OpenAPISchemaValidator({ version: '3.1.0', validateApiSpec: true });
  expect(validator._validator).toBeUndefined();
  expect(validator.validate({ openapi: '3.1.0', info: { title: 't', version: '1' }, paths: {} }).errors).toEqual([]);
  expect(validator._validator).toBeTypeOf('function');
  expect(validator.validate({ openapi: '3.1.0', paths: {} }).errors.length).toBeGreaterThan(0);
});

it('compiles each route pattern once, not on every request', async () => {
  // The path-to-regexp the validator itself loads (looked up through its exports at call time).
  const fromValidator = createRequire(require.resolve('express-openapi-validator'));
  const pathToRegexp = fromValidator('path-to-regexp') as { pathToRegexp: (...args: unknown[]) => unknown };
  const spy = vi.spyOn(pathToRegexp, 'pathToRegexp');
  const database = await createTestDatabase();
  const { createServer, warmUp } = createApp({ db: database.db, logger: pino({ level: 'silent' }) });
  const server = createServer();
  try {
    await warmUp();
    await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
    const { port } = server.address() as { port: number };
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
    expect(await get('/clients/00000000-0000-4000-8000-000000000000')).toBe(401);
    const afterFirst = spy.mock.calls.length;
    expect(afterFirst).toBeGreaterThan(0);
    for (let i = 0; i < 5; i++) {
      expect(await get('/clients/00000000-0000-4000-8000-000000000000')).toBe(401);
      expect(await get('/healthz')).toBe(200);
    }
    expect(spy.mock.calls.length).toBe(afterFirst);
  } finally {
    spy.mockRestore();
    server.close();
    await database.close();
  }
});
