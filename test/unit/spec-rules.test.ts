/**
 * House rules of the spec that no linter knows: what follows from declaring Idempotency-Key, and
 * that every response carries X-Request-Id.
 */
import { describe, expect, it } from 'vitest';
import spec from '../../generated/openapi.json' with { type: 'json' };
import { operationList } from '../../generated/operations.js';

type Node = Record<string, any>;
const doc = spec as unknown as Node;
const deref = (node: Node): Node =>
  typeof node.$ref === 'string'
    ? node.$ref
        .slice(2)
        .split('/')
        .reduce((n: Node, p: string) => n[p], doc)
    : node;
const responsesOf = (path: string, method: string) =>
  Object.entries(doc.paths[path][method].responses as Node).map(([status, r]) => [status, deref(r)] as const);

describe.each(operationList.map((op) => [op.operationId, op] as const))('%s', (_id, op) => {
  it('documents X-Request-Id on every response', () => {
    for (const [status, response] of responsesOf(op.path, op.method)) expect(response.headers?.['X-Request-Id'], status).toBeDefined();
  });
});

const idempotent = operationList.filter((op) => op.idempotencyKey);

it('has operations that take an Idempotency-Key', () => expect(idempotent.length).toBeGreaterThan(0));

describe.each(idempotent.map((op) => [op.operationId, op] as const))('%s', (_id, op) => {
  it('declares what Idempotency-Key brings: 409, 422, and Idempotent-Replayed on what is stored', () => {
    expect(op.method === 'post' || op.method === 'patch').toBe(true);
    expect(op.statuses).toEqual(expect.arrayContaining([409, 422]));
    for (const [status, response] of responsesOf(op.path, op.method)) {
      if (status.startsWith('2')) expect(response.headers?.['Idempotent-Replayed'], status).toBeDefined();
    }
  });
});

it("declares each of an update event's previous attributes exactly as the client's own field", () => {
  const client = doc.components.schemas.Client as Node;
  const previous = doc.components.schemas.ClientPreviousAttributes as Node;
  const fields = Object.keys(previous.properties);
  expect(fields.length).toBeGreaterThan(10);
  for (const field of fields) expect(previous.properties[field], field).toEqual(client.properties[field]);
  // Every field a PATCH can change is there.
  const writable = Object.keys((doc.components.schemas.ClientUpdate as Node).properties);
  expect(fields).toEqual(expect.arrayContaining([...writable, 'updatedAt']));
});

it("has no placeholder in info: every URL the reference page shows leads somewhere of this API's own", () => {
  const urls = JSON.stringify(doc.info).match(/https?:\/\/[^"\s)]+/g) ?? [];
  expect(urls.filter((url) => /\bexample\.(?:com|org|net)\b|\.example\b|\.test\b/.test(url))).toEqual([]);
  expect(doc.info.termsOfService).toBeUndefined();
});
