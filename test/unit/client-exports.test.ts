/**
 * The client package names a type for every schema of the spec that a user handles: each whole
 * request body, and every named schema an answer holds (followed through the answer's schemas).
 * The input pieces of request bodies (`NameInput`, `MoneyInput`, ...) are not named: users write
 * `ClientCreate`, not its parts. Nor are the single fields the bundler lifts into components when one
 * schema refers to another's property (`ClientPreviousAttributes` to `Client`'s `name`, `email`, ...:
 * lower-case names): users reach them through the schema that holds them. The names are listed in one place, client/schemas.ts, each
 * derived from the generated types; a schema added to the spec that users would handle fails here
 * until it is listed. The package's version is the spec's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { root } from '../support/processes.js';

type Node = Record<string, unknown>;
const SCHEMA_REF = '#/components/schemas/';

function refsIn(node: unknown, found: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) refsIn(item, found);
  else if (node && typeof node === 'object') {
    const ref = (node as Node).$ref;
    if (typeof ref === 'string' && ref.startsWith(SCHEMA_REF)) found.push(ref.slice(SCHEMA_REF.length));
    for (const value of Object.values(node)) refsIn(value, found);
  }
  return found;
}

const schemas = spec.components.schemas as Record<string, Node>;
const responses = spec.components.responses as Record<string, Node>;
const operations = Object.values(spec.paths as unknown as Record<string, Record<string, Node>>).flatMap((item) =>
  Object.values(item).filter((op): op is Node => typeof op === 'object' && op !== null && 'operationId' in op),
);
const mediaSchemas = (content: unknown) => Object.values((content ?? {}) as Record<string, Node>).map((media) => media.schema);

/** A property of another schema that the bundler lifted into components (`name`, `enabledEvents`): not a type of its own. */
const isLiftedField = (name: string) => /^[a-z]/.test(name);

function handledSchemas(): string[] {
  const requestBodies = operations.flatMap((op) => mediaSchemas((op.requestBody as Node | undefined)?.content));
  const answers = operations.flatMap((op) =>
    Object.values(op.responses as Record<string, Node>).map((response) => {
      const ref = response.$ref as string | undefined;
      return ref ? responses[ref.split('/').pop()!] : response;
    }),
  );
  const answerSchemas = answers.flatMap((response) => mediaSchemas(response?.content));
  const handled = new Set(requestBodies.flatMap((schema) => ((schema as Node | undefined)?.$ref ? refsIn(schema) : [])));
  // Everything an answer holds, followed through the schemas it names.
  const queue = answerSchemas.flatMap((schema) => refsIn(schema));
  while (queue.length > 0) {
    const name = queue.pop()!;
    if (handled.has(name)) continue;
    handled.add(name);
    queue.push(...refsIn(schemas[name]));
  }
  return [...handled].filter((name) => !isLiftedField(name)).sort();
}

describe('the client package', () => {
  const exports = readFileSync(join(root, 'client/schemas.ts'), 'utf8');
  const exported = [...exports.matchAll(/^export type \w+ = Schemas\['(\w+)'\];$/gm)].map((match) => match[1]);

  it('exports a named type for every schema a user handles, and only schemas the spec has', () => {
    const handled = handledSchemas();
    expect(handled).toEqual(expect.arrayContaining(['Client', 'ClientCreate', 'ClientUpdate', 'ClientList', 'Token']));
    expect(handled.filter((name) => !exported.includes(name))).toEqual([]);
    expect(exported.filter((name) => !(name! in schemas))).toEqual([]);
  });

  it('has the version of the spec', () => {
    const manifest = JSON.parse(readFileSync(join(root, 'client/package.json'), 'utf8')) as { version: string };
    expect(manifest.version).toBe(spec.info.version);
  });
});
