/**
 * The spec's responses are open to additions (a later version may add a field, and a strict
 * generated client must not reject it), so the spec alone no longer catches a server that sends a
 * field the spec lacks. The tests' judges read this copy instead, in which every object schema a
 * response reaches is closed (`additionalProperties: false` where the spec says nothing), so each of
 * them still fails on an undocumented response field. Request schemas are left exactly as they are.
 */
import spec from '../../generated/openapi.json' with { type: 'json' };

type Node = Record<string, any>;

const COMPOSITIONS = ['anyOf', 'oneOf', 'allOf'] as const;

function resolvePointer(doc: Node, ref: string): Node | undefined {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<Node | undefined>((n, p) => n?.[p], doc);
}

/**
 * Closes, in place, every object schema reachable from `schema` that lists its properties and does
 * not say whether others are allowed. `allOf` would need `unevaluatedProperties`, so a response
 * schema that uses it is refused rather than silently left open.
 */
function closeSchema(doc: Node, schema: unknown, seen: Set<Node>): void {
  if (!schema || typeof schema !== 'object' || seen.has(schema as Node)) return;
  const node = schema as Node;
  seen.add(node);
  if (typeof node.$ref === 'string') closeSchema(doc, resolvePointer(doc, node.$ref), seen);
  if (node.allOf) throw new Error('closed-spec: a response schema uses allOf; close it with unevaluatedProperties here first');
  if (node.properties && node.additionalProperties === undefined && node.patternProperties === undefined) node.additionalProperties = false;
  for (const child of Object.values((node.properties ?? {}) as Node)) closeSchema(doc, child, seen);
  if (typeof node.additionalProperties === 'object') closeSchema(doc, node.additionalProperties, seen);
  if (node.items) closeSchema(doc, node.items, seen);
  for (const key of COMPOSITIONS) for (const branch of (node[key] ?? []) as unknown[]) closeSchema(doc, branch, seen);
}

function closeResponse(doc: Node, response: Node, seen: Set<Node>): void {
  const resolved = typeof response.$ref === 'string' ? resolvePointer(doc, response.$ref)! : response;
  for (const media of Object.values((resolved.content ?? {}) as Node)) closeSchema(doc, media.schema, seen);
}

/** A copy of `source` with every response's object schemas closed to undocumented properties. */
export function closeResponses<T>(source: T): T {
  const doc = structuredClone(source) as Node;
  const seen = new Set<Node>();
  for (const item of Object.values((doc.paths ?? {}) as Node)) {
    for (const operation of Object.values(item as Node)) {
      if (!operation || typeof operation !== 'object' || !operation.responses) continue;
      for (const response of Object.values(operation.responses as Node)) closeResponse(doc, response, seen);
    }
  }
  return doc as T;
}

/** The bundled spec with closed responses: what the tests' response checks judge by. */
export const closedSpec = closeResponses(spec) as unknown as Node;
