/**
 * An independent check of every response against the bundled spec: Ajv (not the server's
 * express-openapi-validator) validates status, headers, media type and body of each response the
 * contract tests see, and what info.description promises of every answer, paths outside the spec
 * included (`X-Content-Type-Options: nosniff`). Used as the `fetch` of the typed client, so no
 * response escapes it; each (operation, status) it sees is recorded for the contract-coverage gate.
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { closedSpec } from './closed-spec.js';
import { isDecimalMultipleOf } from './decimal-multiple.js';
import { recordObservation } from './observations.js';

type Node = Record<string, any>;
/** The bundled spec with its responses closed to fields it does not document (closed-spec.ts). */
export const doc = closedSpec;

/**
 * Ajv over the bundled spec. `multipleOf` is judged on the decimal a number is sent as, as JSON
 * Schema defines it: Ajv's own binary-float division refuses valid amounts (19.99 / 0.0001 is
 * 199899.99999999997) and, with `multipleOfPrecision`, accepts invalid ones near 10^12.
 */
export const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.removeKeyword('multipleOf');
ajv.addKeyword({
  keyword: 'multipleOf',
  type: 'number',
  schemaType: 'number',
  errors: false,
  validate: (divisor: number, value: number) => isDecimalMultipleOf(value, divisor),
});
ajv.addSchema(doc, 'spec');

export function pointer(path: string[]): string {
  return `spec#/${path.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

/** The compiled validator of the schema at `path` in the bundled spec (compiled once). */
export function validatorAt(path: string[]): ValidateFunction {
  const ref = pointer(path);
  return ajv.getSchema(ref) ?? ajv.compile({ $ref: ref });
}

export function deref(node: Node): { node: Node; path: string[] | undefined } {
  if (typeof node?.$ref === 'string' && node.$ref.startsWith('#/')) {
    const path = node.$ref
      .slice(2)
      .split('/')
      .map((p: string) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    return { node: path.reduce((n: Node, p: string) => n[p], doc), path };
  }
  return { node, path: undefined };
}

const templates = Object.keys(doc.paths)
  // A literal segment wins over a parameter: /clients/export before /clients/{id}.
  .sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0))
  .map((template) => ({ template, pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`) }));

export function findOperation(method: string, pathname: string): { template: string; operation: Node } | undefined {
  const match = templates.find((t) => t.pattern.test(pathname));
  const operation = match && doc.paths[match.template][method.toLowerCase()];
  return operation ? { template: match.template, operation } : undefined;
}

/** The media type of a Content-Type header, without parameters: `application/json`. */
export const mediaType = (contentType: string | null) => (contentType ? contentType.split(';')[0]!.trim().toLowerCase() : '');

/** What is wrong with this response according to the spec; an empty list when nothing is. */
export function checkResponse(method: string, pathname: string, status: number, headers: Headers, body: unknown): string[] {
  // What info.description promises of every answer, whatever its operation (or none) and status.
  const everywhere = headers.get('x-content-type-options') === 'nosniff' ? [] : ['header X-Content-Type-Options is not nosniff'];
  const found = findOperation(method, pathname);
  if (!found) return status === 404 || status === 405 ? everywhere : [`${method} ${pathname} is not in the spec`, ...everywhere];
  const raw = found.operation.responses[String(status)];
  if (!raw) return [`status ${status} is not documented for ${method} ${found.template}`, ...everywhere];
  const { node: response, path } = deref(raw);
  const problems: string[] = [...everywhere];
  for (const [name, headerRaw] of Object.entries((response.headers ?? {}) as Node)) {
    const header = deref(headerRaw).node;
    const value = headers.get(name);
    if (value === null) {
      if (header.required) problems.push(`header ${name} is missing`);
      continue;
    }
    // A header's schema may point into the spec; resolve that against the spec Ajv already holds.
    const ref = header.schema?.$ref;
    const validate =
      typeof ref === 'string' ? (ajv.getSchema(`spec${ref}`) ?? ajv.compile({ $ref: `spec${ref}` })) : ajv.compile(header.schema);
    const typed = deref(header.schema ?? {}).node.type === 'integer' && /^\d+$/.test(value) ? Number(value) : value;
    if (!validate(typed)) problems.push(`header ${name}: ${ajv.errorsText(validate.errors)}`);
  }
  const content = (response.content ?? {}) as Node;
  if (Object.keys(content).length === 0) {
    if (body !== undefined && body !== '') problems.push('a body was sent where the spec documents none');
    return problems;
  }
  const type = mediaType(headers.get('content-type'));
  if (!content[type]) {
    problems.push(`content type "${type}" is not documented (the spec has ${Object.keys(content).join(', ')})`);
    return problems;
  }
  const responsePath = path ?? ['paths', found.template, method.toLowerCase(), 'responses', String(status)];
  const validate = validatorAt([...responsePath, 'content', type, 'schema']);
  if (!validate(body)) problems.push(`body: ${ajv.errorsText(validate.errors)}`);
  return problems;
}

/** Reads a response body as the checks need it: parsed when it is JSON, text otherwise. */
export async function readBody(response: Response): Promise<unknown> {
  const text = await response.clone().text();
  return mediaType(response.headers.get('content-type')).includes('json') && text ? JSON.parse(text) : text;
}

export interface SpecCheckOptions {
  /**
   * Record each (operation, status) seen for the contract-coverage gate (default true). Tests that
   * provoke a deliberate mismatch turn it off, so their undocumented statuses stay out of the gate.
   */
  record?: boolean;
}

/** A fetch that checks each response against the spec and throws on a violation. */
export function specCheckingFetch(inner: (request: Request) => Promise<Response> = (r) => fetch(r), options: SpecCheckOptions = {}) {
  const record = options.record ?? true;
  return async (request: Request): Promise<Response> => {
    const method = request.method;
    const response = await inner(request);
    const { pathname } = new URL(request.url);
    const problems = checkResponse(method, pathname, response.status, response.headers, await readBody(response));
    const operationId = findOperation(method, pathname)?.operation.operationId as string | undefined;
    if (record && operationId) recordObservation(operationId, response.status);
    if (problems.length > 0) {
      throw new Error(`Response to ${method} ${pathname} (${response.status}) breaks the spec:\n  ${problems.join('\n  ')}`);
    }
    return response;
  };
}

/** Does the spec allow this request body for the operation? (The same Ajv, as an independent judge.) */
export function requestBodyAllowed(method: string, template: string, body: unknown): boolean {
  return validatorAt(['paths', template, method.toLowerCase(), 'requestBody', 'content', 'application/json', 'schema'])(body) as boolean;
}
