/**
 * The spec's examples are what mocks answer (`@clients-api/client/msw`, `npm run mock`) and what the
 * reference page shows, so each one must be an answer the server could give: every example
 * validates against its schema (Ajv over the tests' closed copy of the spec, so a misspelt field
 * fails too), every (operation, status) with a body and every request body has a named example,
 * and the values are written as the server writes them (lower-case UUIDs, timestamps as
 * `Date#toISOString` gives them).
 */
import { describe, expect, it } from 'vitest';
import { ajv, deref, doc, validatorAt } from '../support/spec-check.js';

type Node = Record<string, any>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/;

interface Operation {
  operationId: string;
  path: string[];
  node: Node;
}

/** Every operation of the spec, webhooks included, with its place in the document. */
function operations(): Operation[] {
  const found: Operation[] = [];
  for (const section of ['paths', 'webhooks'] as const) {
    for (const [key, item] of Object.entries((doc[section] ?? {}) as Node)) {
      for (const method of METHODS) {
        if (item[method]) found.push({ operationId: item[method].operationId, path: [section, key, method], node: item[method] });
      }
    }
  }
  return found;
}

interface MediaExamples {
  where: string;
  schemaPath: string[];
  media: Node;
  examples: [string, unknown][];
}

/** The named examples of a media type object, each `$ref` to components/examples followed. */
function namedExamples(media: Node): [string, unknown][] {
  return Object.entries((media.examples ?? {}) as Node).map(([name, entry]) => [name, deref(entry).node.value]);
}

function mediaOf(where: string, owner: Node, ownerPath: string[]): MediaExamples[] {
  return Object.entries((owner.content ?? {}) as Node).map(([type, media]) => ({
    where: `${where} ${type}`,
    schemaPath: [...ownerPath, 'content', type, 'schema'],
    media,
    examples: namedExamples(media),
  }));
}

function responsesOf(op: Operation): { status: string; bodies: MediaExamples[] }[] {
  return Object.entries(op.node.responses as Node).map(([status, raw]) => {
    const { node: response, path } = deref(raw);
    return { status, bodies: mediaOf(`${op.operationId} ${status}`, response, path ?? [...op.path, 'responses', status]) };
  });
}

function requestOf(op: Operation): MediaExamples[] {
  if (!op.node.requestBody) return [];
  const { node: body, path } = deref(op.node.requestBody);
  return mediaOf(`${op.operationId} request`, body, path ?? [...op.path, 'requestBody']);
}

const ops = operations();
const allBodies = ops.flatMap((op) => [...requestOf(op), ...responsesOf(op).flatMap((r) => r.bodies)]);

/** Every string in a value, with where it is. */
function strings(value: unknown, at = ''): [string, string][] {
  if (typeof value === 'string') return [[at, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, `${at}/${i}`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => strings(v, `${at}/${k}`));
  return [];
}

describe('the spec’s examples', () => {
  it('walks every operation, paths and webhooks', () => {
    expect(ops.length).toBeGreaterThanOrEqual(25);
    expect(new Set(ops.map((op) => op.operationId)).size).toBe(ops.length);
  });

  it('gives every (operation, status) with a body, and every request body, a named example', () => {
    const missing: string[] = [];
    const bodiless: string[] = [];
    for (const op of ops) {
      for (const { status, bodies } of responsesOf(op)) {
        if (bodies.length === 0) bodiless.push(`${op.operationId} ${status}`);
        for (const body of bodies) if (body.examples.length === 0) missing.push(body.where);
      }
      for (const body of requestOf(op)) if (body.examples.length === 0) missing.push(body.where);
    }
    expect(missing).toEqual([]);
    // Only these answer without a body: 304, and the receiver's acknowledgement of a webhook.
    expect(
      bodiless.every((pair) => / 304$/.test(pair) || /Webhook 200$/.test(pair)),
      bodiless.join(', '),
    ).toBe(true);
  });

  it('names every example: no bare `example` beside a media type', () => {
    expect(allBodies.filter((body) => body.media.example !== undefined).map((body) => body.where)).toEqual([]);
  });

  it.each(allBodies.filter((body) => body.examples.length > 0).map((body) => [body.where, body] as const))(
    '%s: each example validates against its schema',
    (_where, body) => {
      const validate = validatorAt(body.schemaPath);
      for (const [name, value] of body.examples) {
        expect(value, `${body.where} example ${name} has no value`).toBeDefined();
        const valid = validate(value);
        expect(valid, `${body.where} example ${name}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      }
    },
  );

  it('writes ids and timestamps as the server does: lower-case UUIDs, Date#toISOString', () => {
    const wrong: string[] = [];
    for (const body of allBodies) {
      for (const [name, value] of body.examples) {
        for (const [at, text] of strings(value)) {
          if (UUID.test(text) && text !== text.toLowerCase()) wrong.push(`${body.where} ${name}${at}: ${text}`);
          if (DATE_TIME.test(text) && new Date(text).toISOString() !== text) wrong.push(`${body.where} ${name}${at}: ${text}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('gives parameters and headers examples that fit their schemas', () => {
    const owners: { where: string; node: Node; path: string[] }[] = [];
    for (const [name, node] of Object.entries((doc.components.parameters ?? {}) as Node)) {
      owners.push({ where: `parameter ${name}`, node, path: ['components', 'parameters', name] });
    }
    for (const [name, node] of Object.entries((doc.components.headers ?? {}) as Node)) {
      owners.push({ where: `header ${name}`, node, path: ['components', 'headers', name] });
    }
    let checked = 0;
    for (const owner of owners) {
      const values = [
        ...(owner.node.example === undefined ? [] : [owner.node.example]),
        ...Object.values((owner.node.examples ?? {}) as Node).map((e) => deref(e).node.value),
      ];
      const validate = validatorAt([...owner.path, 'schema']);
      for (const value of values) {
        checked++;
        expect(validate(value), `${owner.where} example ${JSON.stringify(value)}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(5);
  });
});
