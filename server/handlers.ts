/** Every operation of the spec, by operationId. A missing key is a type error. */
import type { Handlers } from './http/handler-types.js';
import { tokenHandlers } from './tokens/tokens.http.js';
import { clientHandlers } from './clients/clients.http.js';
import { systemHandlers } from './system.http.js';

export const handlers: Handlers = {
  ...clientHandlers,
  ...tokenHandlers,
  ...systemHandlers,
};
