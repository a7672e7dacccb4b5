/**
 * The spec's operations as data for judges that generate requests (the fuzzer), and an
 * independent answer to "does the spec allow this request?": Ajv over the bundled spec, never the
 * server's validator. Every operation of the spec is covered; nothing here names one.
 */
import { ajv, deref, doc, mediaType, validatorAt } from './spec-check.js';

type Node = Record<string, any>;

export interface ParameterModel {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: Node;
  /** Where the parameter's schema sits in the bundled spec, for Ajv. */
  schemaPath: string[];
}

export interface BodyModel {
  required: boolean;
  mediaTypes: string[];
  /** The JSON schema of the application/json body, dereferenced one level (its own $ref). */
  schema: Node;
  schemaPath: string[];
  /** The spec's own example of a valid body (its first named one), when it gives one. */
  example: unknown;
}

export interface OperationModel {
  operationId: string;
  method: string;
  template: string;
  authenticated: boolean;
  parameters: ParameterModel[];
  body: BodyModel | undefined;
}

/** A request as it travels: header values as HTTP carries them (trimmed), the body as text. */
export interface ModelRequest {
  operationId: string;
  method: string;
  path: string;
  pathParams: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: { contentType: string; text: string };
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

/** A media type's first named example (`examples`), or its bare `example`. */
function firstExample(media: Node | undefined): unknown {
  const first = Object.values((media?.examples ?? {}) as Node)[0];
  return first === undefined ? media?.example : deref(first).node.value;
}

function modelOperations(): OperationModel[] {
  const models: OperationModel[] = [];
  for (const [template, item] of Object.entries(doc.paths as Node)) {
    for (const method of METHODS) {
      const op = (item as Node)[method];
      if (!op) continue;
      const raw: { node: Node; at: string[] }[] = [
        ...((item as Node).parameters ?? []).map((p: Node, i: number) => ({ node: p, at: ['paths', template, 'parameters', String(i)] })),
        ...(op.parameters ?? []).map((p: Node, i: number) => ({ node: p, at: ['paths', template, method, 'parameters', String(i)] })),
      ];
      const parameters = raw.map(({ node, at }) => {
        const { node: p, path } = deref(node);
        return {
          name: p.name,
          in: p.in,
          required: Boolean(p.required),
          schema: p.schema,
          schemaPath: [...(path ?? at), 'schema'],
        } as ParameterModel;
      });
      let body: BodyModel | undefined;
      if (op.requestBody) {
        const { node: rb, path } = deref(op.requestBody);
        const json = rb.content?.['application/json'];
        const schemaPath = [...(path ?? ['paths', template, method, 'requestBody']), 'content', 'application/json', 'schema'];
        const schema = json ? deref(json.schema).node : {};
        body = {
          required: Boolean(rb.required),
          mediaTypes: Object.keys(rb.content ?? {}),
          schema,
          schemaPath,
          example: firstExample(json) ?? schema.examples?.[0],
        };
      }
      const security = (op.security ?? doc.security ?? []) as unknown[];
      models.push({
        operationId: op.operationId,
        method: method.toUpperCase(),
        template,
        authenticated: security.length > 0,
        parameters,
        body,
      });
    }
  }
  return models;
}

export const operationModels: OperationModel[] = modelOperations();

/** A parameter's text as its schema's type reads it (OpenAPI's simple style). */
function typed(schema: Node, text: string): unknown {
  const types = ([] as string[]).concat(schema?.type ?? []);
  if (types.includes('integer') && /^-?\d+$/.test(text)) return Number(text);
  if (types.includes('number') && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text)) return Number(text);
  if (types.includes('boolean') && (text === 'true' || text === 'false')) return text === 'true';
  return text;
}

/** Why the spec refuses this request; an empty list when it allows it. */
export function requestProblems(model: OperationModel, request: ModelRequest): string[] {
  const problems: string[] = [];
  for (const p of model.parameters) {
    const value =
      p.in === 'header' ? request.headers[p.name.toLowerCase()] : p.in === 'query' ? request.query[p.name] : request.pathParams[p.name];
    if (value === undefined) {
      if (p.required) problems.push(`${p.in} parameter ${p.name} is required`);
      continue;
    }
    const validate = validatorAt(p.schemaPath);
    if (!validate(typed(p.schema, value))) problems.push(`${p.in} parameter ${p.name}: ${ajv.errorsText(validate.errors)}`);
  }
  if (model.body) {
    const sent = request.body && request.body.text.trim() !== '' ? request.body : undefined;
    if (!sent) {
      if (model.body.required) problems.push('the body is required');
    } else if (!model.body.mediaTypes.includes(mediaType(sent.contentType))) {
      problems.push(`content type ${sent.contentType} is not one the spec accepts`);
    } else {
      let value: unknown;
      try {
        value = JSON.parse(sent.text);
      } catch {
        problems.push('the body is not JSON');
        return problems;
      }
      const validate = validatorAt(model.body.schemaPath);
      if (!validate(value)) problems.push(`body: ${ajv.errorsText(validate.errors)}`);
    }
  }
  return problems;
}
