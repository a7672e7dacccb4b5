import type { OpenApiRequestMetadata } from 'express-openapi-validator/dist/framework/types.js';
import type { Logger } from 'pino';
import type { OperationEntry } from '../generated/operations.js';
import type { Caller } from './shared/tenant.js';

declare global {
  namespace Express {
    interface Request {
      /** The spec operation this request matched, if any. */
      operation?: OperationEntry;
      auth?: Caller;
      /** Also in the X-Request-Id response header (server/http/request-log.ts). */
      id: string;
      /** Logs lines that carry the request's id, method, path, operation and query parameters' names (made when first used). */
      log: Logger;
      /** Set by express-openapi-validator once it has matched the request to the spec. */
      openapi?: OpenApiRequestMetadata;
    }
  }
}
