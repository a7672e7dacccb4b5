/**
 * client/generated/pagination.ts: every list of the spec that pages by cursor, with the query
 * parameter that takes the answer's `nextCursor`, so that `api.paginate` follows each list without
 * a hand-written path list. Read from the spec's own links: a GET whose 200 answer links to the
 * same operation with a parameter set from `$response.body#/nextCursor` (`NextClientsPage`:
 * `cursor`; the feed's `NextEventsPage`: `after`). Such an answer must be a page (`data`, an array,
 * and `nextCursor`), or the generation stops.
 */

type Json = Record<string, any>;

function resolve(doc: Json, value: Json | undefined): Json | undefined {
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

export function cursorParameters(doc: Json): Record<string, string> {
  const found: Record<string, string> = {};
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    const operation = item.get as Json | undefined;
    const ok = resolve(doc, operation?.responses?.['200']);
    if (!operation || !ok) continue;
    const names = Object.values((ok.links ?? {}) as Record<string, Json>)
      .map((link) => resolve(doc, link) as Json)
      .filter((link) => link.operationId === operation.operationId)
      .flatMap((link) => Object.entries((link.parameters ?? {}) as Record<string, unknown>))
      .filter(([, value]) => value === '$response.body#/nextCursor')
      .map(([name]) => name.replace(/^query\./, ''));
    if (names.length === 0) continue;
    if (names.length > 1) throw new Error(`${path}: its links pass nextCursor to more than one parameter (${names.join(', ')})`);
    const name = names[0]!;
    const parameters = ((operation.parameters ?? []) as Json[]).map((parameter) => resolve(doc, parameter) as Json);
    if (!parameters.some((parameter) => parameter.in === 'query' && parameter.name === name)) {
      throw new Error(`${path}: its link passes nextCursor to ${name}, which is not a query parameter of ${operation.operationId}`);
    }
    const schema = resolve(doc, ok.content?.['application/json']?.schema);
    const properties = (schema?.properties ?? {}) as Json;
    if (resolve(doc, properties.data)?.type !== 'array' || !properties.nextCursor) {
      throw new Error(`${path}: ${operation.operationId} links to its next page, but its 200 answer is not { data: [...], nextCursor }`);
    }
    found[path] = name;
  }
  return Object.fromEntries(Object.entries(found).sort(([a], [b]) => a.localeCompare(b)));
}

export function paginationModule(doc: Json, banner: string): string {
  return `${banner}
/**
 * Every list that pages by cursor, by path: the query parameter that takes the answer's
 * \`nextCursor\` (from the spec's links to the next page). \`api.paginate\` walks these.
 */
export const cursorParameters = ${JSON.stringify(cursorParameters(doc), null, 2)} as const;
`;
}
