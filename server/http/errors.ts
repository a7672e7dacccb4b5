import type { components } from '../../generated/api.js';

export type ErrorCode = components['schemas']['ErrorCode'];
export type ErrorBody = components['schemas']['ErrorEnvelope'];
type PlanName = components['schemas']['Plan'];

export interface ApiErrorDetails {
  fields?: Record<string, string>;
  requiredPlan?: PlanName;
  feature?: string;
  /** Response headers that go with the error, such as Retry-After. */
  headers?: Record<string, string>;
}

/** An error the API answers with; the error handler renders it in the seed's envelope. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: ApiErrorDetails = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): ErrorBody {
    const { fields, requiredPlan, feature } = this.details;
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(fields && { fields }),
        ...(requiredPlan && { requiredPlan }),
        ...(feature && { feature }),
      },
    };
  }
}

export function validationFailed(fields: Record<string, string>): ApiError {
  const names = Object.keys(fields);
  const message =
    names.length === 1 ? `The field ${names[0]} is invalid: ${fields[names[0]!]}.` : `The request has ${names.length} invalid fields.`;
  return new ApiError(400, 'validation_failed', message, { fields });
}

export const unauthenticated = (message: string) => new ApiError(401, 'unauthenticated', message);

export const forbidden = (scope: string) =>
  new ApiError(403, 'forbidden', `This token lacks the scope ${scope}, which this operation needs.`);

export const notFound = (message = 'No such resource.') => new ApiError(404, 'not_found', message);

export const preconditionFailed = (message: string) => new ApiError(412, 'precondition_failed', message);
