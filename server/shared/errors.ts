/**
 * The errors the API answers with. Shared by every layer: a service throws one, the HTTP layer
 * renders it. An error is raised by its code alone; its status comes from generated/errors.ts,
 * which the spec's error responses give.
 */
import type { components } from '../../generated/api.js';
import { type ErrorCode, errorStatus } from '../../generated/errors.js';
import type { PlanName } from './spec-values.js';

export type { ErrorCode } from '../../generated/errors.js';
export type ErrorBody = components['schemas']['ErrorEnvelope'];

export interface ApiErrorDetails {
  fields?: Record<string, string>;
  requiredPlan?: PlanName;
  feature?: string;
  /** With external_id_taken: the client that has the externalId. */
  existingId?: string;
  /** Response headers that go with the error, such as Retry-After. */
  headers?: Record<string, string>;
}

/** An error the API answers with; the error handler renders it in the seed's envelope. */
export class ApiError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ApiErrorDetails = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = errorStatus[code];
  }

  toBody(): ErrorBody {
    const { fields, requiredPlan, feature, existingId } = this.details;
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(fields && { fields }),
        ...(requiredPlan && { requiredPlan }),
        ...(feature && { feature }),
        ...(existingId && { existingId }),
      },
    };
  }
}

export function validationFailed(fields: Record<string, string>): ApiError {
  const names = Object.keys(fields);
  const message =
    names.length === 1 ? `The field ${names[0]} is invalid: ${fields[names[0]!]}.` : `The request has ${names.length} invalid fields.`;
  return new ApiError('validation_failed', message, { fields });
}

export const unauthenticated = (message: string) => new ApiError('unauthenticated', message);

export const forbidden = (scope: string) => new ApiError('forbidden', `This token lacks the scope ${scope}, which this operation needs.`);

export const notFound = (message = 'No such resource.') => new ApiError('not_found', message);

export const preconditionFailed = (message: string) => new ApiError('precondition_failed', message);
