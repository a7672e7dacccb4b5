/**
 * The fifth judge of `npm run lint:spec`: every OpenAPI link in the bundled spec
 * (generated/openapi.json) leads somewhere real. No linter checks this (a link's `operationId` is
 * only a string to them), and a link that names a renamed operation or a parameter the target
 * no longer takes misleads every tool that walks the chains (the workflows, the stateful fuzzer,
 * the reference page) without failing anything. For each link of each response, it checks that:
 *
 * - its target exists: the `operationId` is one of `paths`' operations, or the `operationRef`
 *   (`#/paths/~1clients~1{id}/get`) resolves to one; exactly one of the two is given;
 * - the target takes every parameter the link fills: by name, or qualified by where it goes
 *   (`path.id`, `query.cursor`, `header.If-Match`, `cookie.x`), and a plain name that is in two
 *   places must be qualified;
 * - it fills every path parameter the target requires (a path cannot be built without it);
 * - it sets a `requestBody` only on an operation that has one;
 * - each value it reads is one the source has: `$response.body#/data/id` a place of the response's
 *   JSON schema, `$response.header.ETag` a header the response declares, `$request.path.id` (and
 *   query, header) a parameter of the source operation, `$request.body#/…` a place of its body.
 *
 *   npm run lint:spec:links              (the bundled spec)
 *   tsx scripts/check-links.ts <file>    (another bundled document)
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const BUNDLED_SPEC = resolve(import.meta.dirname, '../generated/openapi.json');

type Node = Record<string, unknown>;

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
}

interface Operation {
  /** How a message names it: its operationId, or `GET /clients` without one. */
  label: string;
  node: Node;
  parameters: Parameter[];
  hasBody: boolean;
}

export interface LinkCheck {
  /** How many links were checked, counted once per response that has them. */
  checked: number;
  /** One sentence per problem, naming the response and the link. */
  problems: string[];
}

const isObject = (value: unknown): value is Node => typeof value === 'object' && value !== null && !Array.isArray(value);

function decodePointer(pointer: string): string[] {
  return pointer
    .split('/')
    .slice(1)
    .map((segment) => decodeURIComponent(segment).replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The node at a local reference (`#/components/...`), or undefined when there is none. */
function atPointer(doc: Node, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  let node: unknown = doc;
  for (const segment of decodePointer(ref.slice(1))) {
    if (Array.isArray(node)) node = node[Number(segment)];
    else if (isObject(node) && Object.hasOwn(node, segment)) node = node[segment];
    else return undefined;
  }
  return node;
}

/** Follows `$ref`s to the node itself (a bundled document has only local ones). */
function deref(doc: Node, node: unknown): unknown {
  let current = node;
  for (let hops = 0; isObject(current) && typeof current.$ref === 'string' && hops < 32; hops++) current = atPointer(doc, current.$ref);
  return current;
}

function operationsOf(doc: Node): { byId: Map<string, Operation>; all: Operation[] } {
  const byId = new Map<string, Operation>();
  const all: Operation[] = [];
  for (const [path, rawItem] of Object.entries(isObject(doc.paths) ? doc.paths : {})) {
    const item = deref(doc, rawItem);
    if (!isObject(item)) continue;
    for (const method of METHODS) {
      const op = deref(doc, item[method]);
      if (!isObject(op)) continue;
      const declared = [...((item.parameters as unknown[]) ?? []), ...((op.parameters as unknown[]) ?? [])]
        .map((p) => deref(doc, p))
        .filter((p): p is Parameter => isObject(p) && typeof p.name === 'string' && typeof p.in === 'string');
      // An operation's parameter overrides the path item's of the same name and place.
      const parameters = declared.filter(
        (p, i) => !declared.slice(i + 1).some((later) => later.in === p.in && sameName(later.in, later.name, p.name)),
      );
      const label = typeof op.operationId === 'string' ? op.operationId : `${method.toUpperCase()} ${path}`;
      const operation: Operation = { label, node: op, parameters, hasBody: op.requestBody !== undefined };
      all.push(operation);
      if (typeof op.operationId === 'string') byId.set(op.operationId, operation);
    }
  }
  return { byId, all };
}

/** Header names are compared without regard to case (RFC 9110); others exactly. */
function sameName(location: string, a: string, b: string): boolean {
  return location === 'header' ? a.toLowerCase() === b.toLowerCase() : a === b;
}

/** Whether `schema` has a place at `segments`, in any branch of a combinator. */
function schemaHas(doc: Node, rawSchema: unknown, segments: string[], depth = 0): boolean {
  const schema = deref(doc, rawSchema);
  if (segments.length === 0) return schema !== undefined;
  if (!isObject(schema) || depth > 64) return false;
  for (const combinator of ['allOf', 'anyOf', 'oneOf'] as const) {
    const branches = schema[combinator];
    if (Array.isArray(branches) && branches.some((branch) => schemaHas(doc, branch, segments, depth + 1))) return true;
  }
  const [head, ...rest] = segments as [string, ...string[]];
  const properties = schema.properties;
  if (isObject(properties) && Object.hasOwn(properties, head)) return schemaHas(doc, properties[head], rest, depth + 1);
  if (/^(0|[1-9][0-9]*)$/.test(head)) {
    if (Array.isArray(schema.prefixItems) && Number(head) < schema.prefixItems.length)
      return schemaHas(doc, schema.prefixItems[Number(head)], rest, depth + 1);
    if (schema.items !== undefined && schema.items !== false) return schemaHas(doc, schema.items, rest, depth + 1);
  }
  if (isObject(schema.additionalProperties)) return schemaHas(doc, schema.additionalProperties, rest, depth + 1);
  return false;
}

/** The JSON schemas of a request body or response (any JSON media type). */
function jsonSchemas(doc: Node, holder: unknown): unknown[] {
  const content = isObject(holder) ? holder.content : undefined;
  if (!isObject(content)) return [];
  return Object.entries(content)
    .filter(([type]) => /^application\/(?:[\w.+-]+\+)?json\b/i.test(type))
    .map(([, media]) => (isObject(media) ? media.schema : undefined))
    .filter((schema) => schema !== undefined)
    .map((schema) => deref(doc, schema));
}

/** Why the value a link reads cannot be there, or undefined when it can. */
function expressionProblem(doc: Node, expression: string, source: Operation, response: Node): string | undefined {
  if (['$url', '$method', '$statusCode'].includes(expression)) return undefined;
  const body = /^\$(request|response)\.body(?:#(\/.*)?)?$/.exec(expression);
  if (body) {
    const [, side, pointer = ''] = body as unknown as [string, 'request' | 'response', string | undefined];
    const holder = side === 'response' ? response : deref(doc, source.node.requestBody);
    const schemas = jsonSchemas(doc, holder);
    if (schemas.length === 0) return `reads ${expression}, but the ${side} of ${source.label} has no JSON body`;
    const segments = decodePointer(pointer);
    return schemas.some((schema) => schemaHas(doc, schema, segments))
      ? undefined
      : `reads ${expression}, but no schema of the ${side} body of ${source.label} has ${pointer || 'a body'}`;
  }
  const header = /^\$response\.header\.([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(expression);
  if (header) {
    const name = header[1] as string;
    const headers = isObject(response.headers) ? Object.keys(response.headers) : [];
    return headers.some((declared) => sameName('header', declared, name))
      ? undefined
      : `reads ${expression}, but the response of ${source.label} declares no header ${name}`;
  }
  const request = /^\$request\.(path|query|header)\.(.+)$/.exec(expression);
  if (request) {
    const [, location, name] = request as unknown as [string, string, string];
    return source.parameters.some((p) => p.in === location && sameName(location, p.name, name))
      ? undefined
      : `reads ${expression}, but ${source.label} takes no ${location} parameter ${name}`;
  }
  return `reads ${expression}, which is not a runtime expression a link can use`;
}

/** The runtime expressions in a link's value: the whole value, or each `{$…}` embedded in a string. */
function expressionsIn(value: unknown): string[] {
  if (typeof value !== 'string') return [];
  if (value.startsWith('$')) return [value];
  return [...value.matchAll(/\{(\$[^}]+)\}/g)].map((match) => match[1] as string);
}

function targetOf(doc: Node, link: Node, operations: ReturnType<typeof operationsOf>): Operation | string {
  const { operationId, operationRef } = link;
  if (operationId !== undefined && operationRef !== undefined) return 'names both an operationId and an operationRef (one only)';
  if (typeof operationId === 'string')
    return operations.byId.get(operationId) ?? `names operationId ${operationId}, which no operation has`;
  if (typeof operationRef === 'string') {
    const node = deref(doc, atPointer(doc, operationRef));
    return (
      operations.all.find((op) => op.node === node) ??
      `has operationRef ${operationRef}, which does not resolve to an operation of this document`
    );
  }
  return 'names no operationId nor operationRef';
}

function parameterProblem(key: string, target: Operation): string | undefined {
  const qualified = /^(path|query|header|cookie)\.(.+)$/.exec(key);
  const [location, name] = qualified ? [qualified[1] as string, qualified[2] as string] : [undefined, key];
  const matches = target.parameters.filter((p) => (location === undefined || p.in === location) && sameName(p.in, p.name, name));
  const takes = target.parameters.map((p) => `${p.in}.${p.name}`).join(', ') || 'none';
  if (matches.length === 0) return `fills parameter ${key}, which ${target.label} does not take (it takes: ${takes})`;
  if (matches.length > 1)
    return `fills parameter ${key}, which ${target.label} takes in ${matches.map((p) => p.in).join(' and ')}: qualify it`;
  return undefined;
}

/** Checks every link of every response of `doc` (a bundled OpenAPI 3.x document). */
export function checkLinks(doc: unknown): LinkCheck {
  const problems: string[] = [];
  let checked = 0;
  if (!isObject(doc)) return { checked, problems: ['the document is not an object'] };
  const operations = operationsOf(doc);
  for (const source of operations.all) {
    const responses = deref(doc, source.node.responses);
    for (const [status, rawResponse] of Object.entries(isObject(responses) ? responses : {})) {
      const response = deref(doc, rawResponse);
      if (!isObject(response) || !isObject(response.links)) continue;
      for (const [name, rawLink] of Object.entries(response.links)) {
        checked++;
        const place = `${source.label} ${status} → link ${name}`;
        const link = deref(doc, rawLink);
        if (!isObject(link)) {
          problems.push(`${place}: does not resolve to a link`);
          continue;
        }
        const target = targetOf(doc, link, operations);
        if (typeof target === 'string') {
          problems.push(`${place}: ${target}`);
          continue;
        }
        const parameters = isObject(link.parameters) ? link.parameters : {};
        for (const [key, value] of Object.entries(parameters)) {
          const problem = parameterProblem(key, target);
          if (problem) problems.push(`${place}: ${problem}`);
          for (const expression of expressionsIn(value)) {
            const wrong = expressionProblem(doc, expression, source, response);
            if (wrong) problems.push(`${place}: parameter ${key} ${wrong}`);
          }
        }
        for (const required of target.parameters.filter((p) => p.in === 'path' && p.required)) {
          const filled = Object.keys(parameters).some((key) => key === required.name || key === `path.${required.name}`);
          if (!filled) problems.push(`${place}: does not fill path parameter ${required.name}, which ${target.label} requires`);
        }
        if (link.requestBody !== undefined) {
          if (!target.hasBody) problems.push(`${place}: sets a requestBody, but ${target.label} takes none`);
          for (const expression of expressionsIn(link.requestBody)) {
            const wrong = expressionProblem(doc, expression, source, response);
            if (wrong) problems.push(`${place}: requestBody ${wrong}`);
          }
        }
      }
    }
  }
  return { checked, problems };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2] ?? BUNDLED_SPEC;
  const { checked, problems } = checkLinks(JSON.parse(readFileSync(file, 'utf8')));
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) {
    console.error(`\n${problems.length} problem(s) in the links of ${file}.`);
    process.exitCode = 1;
  } else {
    console.log(`All ${checked} links of ${file} lead to operations that take what they fill.`);
  }
}
