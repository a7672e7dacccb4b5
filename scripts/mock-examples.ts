/**
 * client/generated/examples.ts: every operation of the spec's paths with its method, its path in
 * MSW's syntax, and each documented answer's media type, the headers the spec gives an example
 * (or a single value) for, and its named examples. `@clients-api/client/msw` answers from it, so
 * the mocks follow the spec as the types do. Each example is written with `satisfies` the body
 * type openapi-typescript made for that answer: an example that drifts from the types does not
 * compile (test/unit/spec-examples.test.ts judges them against the schemas themselves).
 */

type Json = Record<string, any>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

function resolve(doc: Json, value: Json): Json {
  const ref = value?.$ref;
  if (typeof ref !== 'string') return value;
  return resolve(
    doc,
    ref
      .slice(2)
      .split('/')
      .reduce<Json>((node, part) => node[part.replace(/~1/g, '/').replace(/~0/g, '~')] as Json, doc),
  );
}

/** A header's example value, or the one value its schema allows; undefined when it has neither. */
function headerValue(doc: Json, raw: Json): string | undefined {
  const header = resolve(doc, raw);
  const schema = resolve(doc, header.schema ?? {});
  const value = header.example ?? schema.const ?? (schema.enum?.length === 1 ? schema.enum[0] : undefined) ?? schema.example;
  return value === undefined ? undefined : String(value);
}

const literal = (value: unknown) => JSON.stringify(value, null, 2);
const indent = (text: string, by: number) => text.replace(/\n/g, `\n${' '.repeat(by)}`);

function responseEntry(doc: Json, operationId: string, status: string, raw: Json): string {
  const response = resolve(doc, raw);
  const headers: Record<string, string> = {};
  for (const [name, header] of Object.entries((response.headers ?? {}) as Json)) {
    if (!resolve(doc, header).required) continue;
    const value = headerValue(doc, header);
    // Location is the created resource's own path, which the handlers make from its id.
    if (value === undefined && name !== 'Location') {
      throw new Error(`${operationId} ${status}: the required header ${name} has no example for the mocks to send; add one`);
    }
    if (value !== undefined) headers[name] = value;
  }
  const [contentType, media] = Object.entries((response.content ?? {}) as Json)[0] ?? [null, undefined];
  const examples = Object.entries((media?.examples ?? {}) as Json).map(([name, entry]) => {
    const value = resolve(doc, entry).value;
    const type = `Body<operations[${JSON.stringify(operationId)}]['responses'][${status}], ${JSON.stringify(contentType)}>`;
    return `${JSON.stringify(name)}: ${indent(literal(value), 6)} satisfies ${type},`;
  });
  return `${status}: {
      contentType: ${JSON.stringify(contentType)},
      headers: ${indent(literal(headers), 6)},
      examples: {${examples.length ? `\n        ${examples.map((e) => indent(e, 2)).join('\n        ')}\n      ` : ''}},
    },`;
}

export function mockExamplesModule(doc: Json, banner: string): string {
  const entries: string[] = [];
  const operations: { operationId: string; text: string }[] = [];
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const statuses = Object.keys(op.responses).sort();
      const success = statuses.find((s) => s.startsWith('2'));
      if (!success) throw new Error(`${op.operationId} documents no 2xx answer to mock`);
      const responses = statuses.map((status) => responseEntry(doc, op.operationId, status, op.responses[status]));
      operations.push({
        operationId: op.operationId,
        text: `${JSON.stringify(op.operationId)}: {
    method: ${JSON.stringify(method)},
    path: ${JSON.stringify(path.replace(/\{([^}]+)\}/g, ':$1'))},
    success: ${success},
    responses: {
      ${responses.map((r) => indent(r, 2)).join('\n      ')}
    },
  },`,
      });
    }
  }
  operations.sort((a, b) => a.operationId.localeCompare(b.operationId));
  for (const op of operations) entries.push(op.text);
  return `${banner}
import type { operations } from './api.js';

/** The body type of one answer in one media type. */
type Body<Response, ContentType> = Response extends { content: infer Content }
  ? ContentType extends keyof Content
    ? Content[ContentType]
    : never
  : never;

/** One documented answer: its media type (null without a body), headers with a known value, named examples. */
export interface MockAnswer {
  contentType: string | null;
  headers: Record<string, string>;
  examples: Record<string, unknown>;
}

/** One operation: its method, its path in MSW's syntax, its first 2xx status and its documented answers. */
export interface MockOperation {
  method: 'get' | 'put' | 'post' | 'delete' | 'patch';
  path: string;
  success: number;
  responses: Record<number, MockAnswer>;
}

export type MockOperationId = ${operations.map((op) => JSON.stringify(op.operationId)).join(' | ')};

/** Every operation of the spec's paths, by operationId. */
export const operationExamples: Record<MockOperationId, MockOperation> = {
  ${entries.join('\n  ')}
};
`;
}
