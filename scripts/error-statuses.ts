/**
 * generated/errors.ts: the HTTP status of every error code, read from the spec's own examples (each
 * error response of each operation shows the codes it answers with). An error is then raised by
 * its code alone (server/shared/errors.ts) and its status cannot drift from the spec. A code that no
 * operation answers must be HTTP's reason phrase of its status (method_not_allowed: 405). A code
 * with neither, or shown under two statuses, stops the generation.
 */
import { STATUS_CODES } from 'node:http';

type Json = Record<string, unknown>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

function examplesOf(media: Json | undefined): unknown[] {
  if (!media) return [];
  const named = Object.values((media.examples ?? {}) as Record<string, { value?: unknown }>).map((e) => e.value);
  return media.example === undefined ? named : [media.example, ...named];
}

/** A `$ref` inside the bundled document, followed. */
function resolve(doc: Json, value: Json): Json {
  const ref = value.$ref;
  if (typeof ref !== 'string') return value;
  return ref
    .slice(2)
    .split('/')
    .reduce<Json>((node, part) => node[part.replace(/~1/g, '/').replace(/~0/g, '~')] as Json, doc);
}

export function errorStatuses(doc: Json): Record<string, number> {
  const schemas = (doc.components as { schemas: Record<string, { enum?: string[] }> }).schemas;
  const codeSchema = Object.values(schemas).find((schema) => schema.enum?.includes('validation_failed'));
  if (!codeSchema?.enum) throw new Error('The spec has no enum of error codes');
  const statuses = new Map<string, number>();
  for (const item of Object.values(doc.paths as Record<string, Record<string, Json>>)) {
    for (const method of METHODS) {
      const responses = (item[method]?.responses ?? {}) as Record<string, Json>;
      for (const [status, entry] of Object.entries(responses)) {
        const response = resolve(doc, entry) as { content?: Record<string, Json> };
        if (Number(status) < 400) continue;
        for (const example of examplesOf(response.content?.['application/json'])) {
          const code = (example as { error?: { code?: string } } | undefined)?.error?.code;
          if (code === undefined) continue;
          const known = statuses.get(code);
          if (known !== undefined && known !== Number(status)) throw new Error(`Error code ${code} is shown under ${known} and ${status}`);
          statuses.set(code, Number(status));
        }
      }
    }
  }
  // A code no operation answers (the method of a path the spec lacks) is HTTP's own reason phrase.
  for (const code of codeSchema.enum.filter((c) => !statuses.has(c))) {
    const reason = Object.entries(STATUS_CODES).find(([, phrase]) => phrase?.toLowerCase().replace(/\W+/g, '_') === code);
    if (reason) statuses.set(code, Number(reason[0]));
  }
  const missing = codeSchema.enum.filter((code) => !statuses.has(code));
  if (missing.length > 0) throw new Error(`No response of the spec shows the error code(s) ${missing.join(', ')}: add an example`);
  return Object.fromEntries(codeSchema.enum.map((code) => [code, statuses.get(code)!]));
}

export function errorStatusModule(doc: Json, banner: string): string {
  return `${banner}
/** The HTTP status of every error code, as the spec's error responses show them. */
export const errorStatus = ${JSON.stringify(errorStatuses(doc), null, 2)} as const;

export type ErrorCode = keyof typeof errorStatus;
`;
}
