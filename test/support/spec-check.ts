/**
 * An independent check of every response against the bundled spec: Ajv (not the server's
 * express-openapi-validator) validates status, headers and body of each response the contract
 * tests see. Used as the `fetch` of the typed client, so no response escapes it.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import spec from '../../generated/openapi.json' with { type: 'json' };

type Node = Record<string, any>;
const doc = spec as unknown as Node;

const ajv = new Ajv2020({ strict: false, allErrors: true, multipleOfPrecision: 4 });
addFormats.default(ajv);
ajv.addSchema(doc, 'spec');

function pointer(path: string[]): string {
  return `spec#/${path.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

function deref(node: Node): { node: Node; path: string[] | undefined } {
  if (typeof node?.$ref === 'string' && node.$ref.startsWith('#/')) {
    const path = node.$ref.slice(2).split('/').map((p: string) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    return { node: path.reduce((n: Node, p: string) => n[p], doc), path };
  }
  return { node, path: undefined };
}

const templates = Object.keys(doc.paths).map((template) => ({
  template,
  pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

export function findOperation(method: string, pathname: string): { template: string; operation: Node } | undefined {
  const match = templates.find((t) => t.pattern.test(pathname));
  const operation = match && doc.paths[match.template][method.toLowerCase()];
  return operation ? { template: match.template, operation } : undefined;
}

export interface SpecViolation {
  method: string;
  path: string;
  status: number;
  problem: string;
}

/** What is wrong with this response according to the spec; an empty list when nothing is. */
export function checkResponse(method: string, pathname: string, status: number, headers: Headers, body: unknown): string[] {
  const found = findOperation(method, pathname);
  if (!found) return status === 404 || status === 405 ? [] : [`${method} ${pathname} is not in the spec`];
  const raw = found.operation.responses[String(status)];
  if (!raw) return [`status ${status} is not documented for ${method} ${found.template}`];
  const { node: response, path } = deref(raw);
  const problems: string[] = [];
  for (const [name, headerRaw] of Object.entries((response.headers ?? {}) as Node)) {
    const header = deref(headerRaw).node;
    const value = headers.get(name);
    if (value === null) {
      if (header.required) problems.push(`header ${name} is missing`);
      continue;
    }
    // A header's schema may point into the spec; resolve that against the spec Ajv already holds.
    const ref = header.schema?.$ref;
    const validate = typeof ref === 'string' ? (ajv.getSchema(`spec${ref}`) ?? ajv.compile({ $ref: `spec${ref}` })) : ajv.compile(header.schema);
    const typed = deref(header.schema ?? {}).node.type === 'integer' && /^\d+$/.test(value) ? Number(value) : value;
    if (!validate(typed)) problems.push(`header ${name}: ${ajv.errorsText(validate.errors)}`);
  }
  const media = response.content?.['application/json'];
  if (!media) {
    if (body !== undefined && body !== '') problems.push('a body was sent where the spec documents none');
    return problems;
  }
  const schemaPath = path
    ? [...path, 'content', 'application/json', 'schema']
    : ['paths', found.template, method.toLowerCase(), 'responses', String(status), 'content', 'application/json', 'schema'];
  const validate = ajv.getSchema(pointer(schemaPath)) ?? ajv.compile({ $ref: pointer(schemaPath) });
  if (!validate(body)) problems.push(`body: ${ajv.errorsText(validate.errors)}`);
  return problems;
}

/** Does the spec allow this request body for the operation? (For the fuzzing judge.) */
export function requestBodyAllowed(method: string, template: string, body: unknown): boolean {
  const validate = ajv.compile({
    $ref: pointer(['paths', template, method.toLowerCase(), 'requestBody', 'content', 'application/json', 'schema']),
  });
  return validate(body) as boolean;
}

/** Every violation seen by checking fetches, for the afterAll of a suite. */
export const violations: SpecViolation[] = [];

/** A fetch that checks each response against the spec and throws on a violation. */
export function specCheckingFetch(inner: (request: Request) => Promise<Response> = (r) => fetch(r)) {
  return async (request: Request): Promise<Response> => {
    const method = request.method;
    const response = await inner(request);
    const { pathname } = new URL(request.url);
    const text = await response.clone().text();
    let body: unknown = text;
    if ((response.headers.get('content-type') ?? '').includes('json') && text) body = JSON.parse(text);
    const problems = checkResponse(method, pathname, response.status, response.headers, body);
    if (problems.length > 0) {
      for (const problem of problems) violations.push({ method, path: pathname, status: response.status, problem });
      throw new Error(`Response to ${method} ${pathname} (${response.status}) breaks the spec:\n  ${problems.join('\n  ')}`);
    }
    return response;
  };
}
