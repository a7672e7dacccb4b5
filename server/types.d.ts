import type { OperationEntry } from '../generated/operations.js';
import type { AuthContext } from './auth/auth.js';

declare global {
  namespace Express {
    interface Request {
      /** The spec operation this request matched, if any. */
      operation?: OperationEntry;
      auth?: AuthContext;
      /** Set by pino-http; also in the X-Request-Id response header. */
      id: string;
    }
  }
}
export {};
