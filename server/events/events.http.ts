/** The change feed's operations. */
import type { Handlers } from '../http/handler-types.js';

const notYet = async (): Promise<never> => {
  throw new Error('not built yet');
};

export const eventHandlers = {
  listEvents: notYet,
  getEvent: notYet,
} satisfies Partial<Handlers>;
