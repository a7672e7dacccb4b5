/**
 * patches/express-openapi-validator+5.6.2.patch (applied by patch-package on install): the
 * validator no longer compiles the OpenAPI meta-schema unless the document is to be checked
 * against it (a third of a second of every start-up), and still checks it when asked.
 */
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';

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
