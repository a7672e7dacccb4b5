/**
 * What the server needs to know from the bundled spec, computed once at start-up: the document
 * itself, how to match a request to its operation, which body fields take decimals as written, and
 * the spec's own words for each field's error (`x-error-message`).
 */
import bundledSpec from '../../generated/openapi.json' with { type: 'json' };
import { operationList, type OperationEntry, type OperationId } from '../../generated/operations.js';

type Schema = Record<string, unknown>;
export type OpenApiDocument = Record<string, unknown> & { paths: Record<string, Record<string, Schema>>; components: Schema };

/** The bundled spec; a fresh copy each call, since the validator annotates what it is given. */
export function loadSpec(): OpenApiDocument {
  return structuredClone(bundledSpec) as unknown as OpenApiDocument;
}

export interface OperationInfo {
  entry: OperationEntry;
  /** Body fields that accept a decimal as a number or a string: numbers are read as written. */
  decimalFields: ReadonlySet<string>;
  /** Field (or header) → what is wrong with it, in the spec's own words. */
  messages: ReadonlyMap<string, string>;
  /** What to say of a body field the schema does not know. */
  unknownFieldMessage: string;
  /** Query parameters of style deepObject (`metadata[key]=value`): server/http/query-rules.ts. */
  deepObjectParameters: readonly string[];
  /**
   * By status, the headers the spec fixes: required, with a `const` value (`Cache-Control:
   * no-store` on an answer that shows a secret). The router sets them on every such answer.
   */
  fixedHeaders: ReadonlyMap<number, readonly [name: string, value: string][]>;
}

export interface SpecIndex {
  doc: OpenApiDocument;
  operations: ReadonlyMap<OperationId, OperationInfo>;
  /** Finds the operation of a method and path, or undefined. */
  match(method: string, path: string): OperationEntry | undefined;
}

export function indexSpec(doc: OpenApiDocument): SpecIndex {
  const resolve = (schema: unknown): Schema => {
    let current = (schema ?? {}) as Schema;
    const seen = new Set<string>();
    while (current && typeof current.$ref === 'string' && !seen.has(current.$ref)) {
      seen.add(current.$ref);
      const target = current.$ref
        .replace(/^#\//, '')
        .split('/')
        .reduce<unknown>((node, part) => (node as Schema)[part.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
      // A $ref's siblings (such as description) override the target's.
      const { $ref: _ref, ...siblings } = current;
      current = { ...(target as Schema), ...siblings };
    }
    return current;
  };

  const operations = new Map<OperationId, OperationInfo>();
  const matchers: { method: string; pattern: RegExp; entry: OperationEntry }[] = [];
  for (const entry of operationList) {
    const op = resolve(doc.paths[entry.path]![entry.method]);
    const messages = new Map<string, string>();
    const decimalFields = new Set<string>();
    let unknownFieldMessage = 'is not a known field';
    const deepObjectParameters: string[] = [];
    for (const param of (op.parameters ?? []) as unknown[]) {
      const p = resolve(param);
      const message = resolve(p.schema)['x-error-message'];
      if (typeof message === 'string') messages.set(p.name as string, message);
      if (p.in === 'query' && p.style === 'deepObject') deepObjectParameters.push(p.name as string);
    }
    const body = resolve(((resolve(op.requestBody).content as Schema | undefined)?.['application/json'] as Schema | undefined)?.schema);
    if (typeof body['x-error-message-additional'] === 'string') unknownFieldMessage = body['x-error-message-additional'];
    for (const [field, raw] of Object.entries((body.properties ?? {}) as Record<string, unknown>)) {
      const schema = resolve(raw);
      if (typeof schema['x-error-message'] === 'string') messages.set(field, schema['x-error-message']);
      const branches = ((schema.anyOf ?? []) as unknown[]).map(resolve);
      if (branches.some((b) => b.type === 'number') && branches.some((b) => b.type === 'string')) decimalFields.add(field);
    }
    const fixedHeaders = new Map<number, [string, string][]>();
    for (const [status, response] of Object.entries((op.responses ?? {}) as Record<string, unknown>)) {
      const fixed = Object.entries((resolve(response).headers ?? {}) as Record<string, unknown>).flatMap(([name, raw]) => {
        const header = resolve(raw);
        const value = resolve(header.schema).const;
        return header.required === true && typeof value === 'string' ? [[name, value] as [string, string]] : [];
      });
      if (fixed.length > 0) fixedHeaders.set(Number(status), fixed);
    }
    operations.set(entry.operationId, { entry, decimalFields, messages, unknownFieldMessage, deepObjectParameters, fixedHeaders });
    const pattern = new RegExp(`^${entry.path.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    matchers.push({ method: entry.method.toUpperCase(), pattern, entry });
  }

  return {
    doc,
    operations,
    match: (method, path) => matchers.find((m) => m.method === method && m.pattern.test(path))?.entry,
  };
}
