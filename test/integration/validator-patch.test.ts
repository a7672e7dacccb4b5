/**
 * patches/express-openapi-validator+5.6.2.patch (applied by patch-package on install): the
 * validator no longer compiles the OpenAPI meta-schema unless the document is to be checked
 * against it (a third of a second of every start-up), and still checks it when asked; and it
 * compiles each route's path pattern, and works out its names, once instead of on every request
 * (the routes it tries are a table made at the first request); and it reads the raw query
 * string without `url.parse`, which Node 24 and later deprecate at run time (DEP0169: a warning on
 * the bundled server's stderr, which built-server.test.ts checks). The patch is checked to be in
 * place, and still needed by the version installed (patches/README.md says what retires it).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { createApp } from '../../server/app.js';
import { createTestDatabase } from '../support/database.js';

const require = createRequire(import.meta.url);
const { OpenAPISchemaValidator } = require('express-openapi-validator/dist/framework/openapi.schema.validator.js') as {
  OpenAPISchemaValidator: new (options: {
    version: string;
    validateApiSpec: boolean;
  }) => {
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

it("compiles each route pattern, and works out each route's names, once, not on every request", async () => {
  // The path-to-regexp the validator itself loads (looked up through its exports at call time).
  const fromValidator = createRequire(require.resolve('express-openapi-validator'));
  const pathToRegexp = fromValidator('path-to-regexp') as { pathToRegexp: (...args: unknown[]) => unknown };
  const spy = vi.spyOn(pathToRegexp, 'pathToRegexp');
  const { OpenApiContext } = require('express-openapi-validator/dist/framework/openapi.context.js') as {
    OpenApiContext: { prototype: { routePair: (...args: unknown[]) => unknown } };
  };
  const names = vi.spyOn(OpenApiContext.prototype, 'routePair');
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
    const namedAfterFirst = names.mock.calls.length;
    expect(afterFirst).toBeGreaterThan(0);
    for (let i = 0; i < 5; i++) {
      expect(await get('/clients/00000000-0000-4000-8000-000000000000')).toBe(401);
      expect(await get('/healthz')).toBe(200);
    }
    expect(spy.mock.calls.length).toBe(afterFirst);
    expect(names.mock.calls.length).toBe(namedAfterFirst);
  } finally {
    spy.mockRestore();
    names.mockRestore();
    server.close();
    await database.close();
  }
});

describe('the patch itself', () => {
  const root = resolve(import.meta.dirname, '../..');
  const patch = 'patches/express-openapi-validator+5.6.2.patch';

  it('is applied to the installed package (patch-package ran, and the patch still applies)', () => {
    // Reversing it cleanly is only possible where every hunk is in place.
    expect(() => execFileSync('git', ['apply', '--reverse', '--check', patch], { cwd: root, stdio: 'pipe' })).not.toThrow();
  });

  it('is still needed: the version it was made for is installed, and without it that version compiles a route pattern per request and the meta-schema at start-up, and calls url.parse', () => {
    const installed = (require('express-openapi-validator/package.json') as { version: string }).version;
    expect(patch).toContain(`+${installed}.patch`);
    // The package as published: the installed files with the patch taken back out, in a copy.
    const copy = mkdtempSync(join(tmpdir(), 'validator-unpatched-'));
    try {
      const files = [
        'dist/middlewares/openapi.metadata.js',
        'dist/framework/openapi.schema.validator.js',
        'dist/middlewares/parsers/req.parameter.mutator.js',
      ];
      for (const file of files) {
        mkdirSync(dirname(join(copy, 'node_modules/express-openapi-validator', file)), { recursive: true });
        copyFileSync(
          join(root, 'node_modules/express-openapi-validator', file),
          join(copy, 'node_modules/express-openapi-validator', file),
        );
      }
      execFileSync('git', ['apply', '--reverse', '--unsafe-paths', `--directory=.`, join(root, patch)], { cwd: copy, stdio: 'pipe' });
      const metadata = readFileSync(join(copy, 'node_modules/express-openapi-validator', files[0]!), 'utf8');
      const schemaValidator = readFileSync(join(copy, 'node_modules/express-openapi-validator', files[1]!), 'utf8');
      // Upstream's lookupRoute compiles inside the per-request closure; upstream's constructor compiles the meta-schema.
      const perRequest = metadata.slice(metadata.indexOf('return (req, res, next) =>'));
      expect(perRequest).toContain('(0, path_to_regexp_1.pathToRegexp)(expressRoute, pathOpts)');
      const constructorText = schemaValidator.slice(
        schemaValidator.indexOf('constructor('),
        schemaValidator.indexOf('validate(openapiDoc)'),
      );
      expect(constructorText).toContain('this.validator = ajvInstance.compile(schema)');
      const mutator = readFileSync(join(copy, 'node_modules/express-openapi-validator', files[2]!), 'utf8');
      expect(mutator).toContain('url.parse(req.originalUrl).query');
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
