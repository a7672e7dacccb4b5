/**
 * What the spec declares and the code needs as values at run time, read from the bundled spec
 * (generated/openapi.json) once at start-up rather than typed again: environments, plans and
 * scopes (each schema's enum), the list's defaults and the texts of its parameters' errors. The
 * types come from generated/api.ts.
 */
import bundledSpec from '../../generated/openapi.json' with { type: 'json' };
import type { components, operations } from '../../generated/api.js';

type Schemas = components['schemas'];
export type Env = Schemas['Env'];
export type PlanName = Schemas['Plan'];
export type Scope = Schemas['Scope'];
export type DeletedFilter = NonNullable<NonNullable<operations['listClients']['parameters']['query']>['deleted']>;

interface ParameterSchema {
  enum?: string[];
  default?: unknown;
  'x-error-message'?: string;
}

const spec = bundledSpec as unknown as {
  components: { schemas: Record<string, ParameterSchema> };
  paths: Record<string, Record<string, { operationId?: string; parameters?: { name: string; schema: ParameterSchema }[] }>>;
};

function enumOf<T extends string>(schema: string): readonly T[] {
  const values = spec.components.schemas[schema]?.enum;
  if (!values) throw new Error(`The spec has no enum ${schema}`);
  return values as T[];
}

function parameterOf(operationId: string, name: string): ParameterSchema {
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item)) {
      if (operation.operationId !== operationId) continue;
      const parameter = operation.parameters?.find((p) => p.name === name);
      if (parameter) return parameter.schema;
    }
  }
  throw new Error(`The spec's ${operationId} has no parameter ${name}`);
}

/** Every scope a token may hold, in the spec's order. */
export const SCOPES = enumOf<Scope>('Scope');
/** Plans, cheapest first (the spec lists them so). */
export const PLAN_NAMES = enumOf<PlanName>('Plan');

/** GET /clients: the page size and the filter when the caller gives none. */
export const LIST_DEFAULTS = {
  limit: parameterOf('listClients', 'limit').default as number,
  deleted: parameterOf('listClients', 'deleted').default as DeletedFilter,
};

/** A parameter's default, as the spec gives it (the validator fills it in; types still call it optional). */
export function parameterDefault(operationId: string, name: string): unknown {
  return parameterOf(operationId, name).default;
}

/** A parameter's `x-error-message`: what a 400 says of it, when the server (not the validator) refuses it. */
export function parameterMessage(operationId: string, name: string): string {
  const message = parameterOf(operationId, name)['x-error-message'];
  if (!message) throw new Error(`The spec's ${operationId} parameter ${name} has no x-error-message`);
  return message;
}
