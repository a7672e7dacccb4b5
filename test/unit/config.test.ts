/** What production runs with when the environment says nothing: the checks that cost per request stay off. */
import { expect, it } from 'vitest';
import { loadConfig } from '../../server/config.js';

it('validates responses only when VALIDATE_RESPONSES=true (tests pass it to createApp themselves)', () => {
  expect(loadConfig({}).validateResponses).toBe(false);
  expect(loadConfig({ VALIDATE_RESPONSES: 'false' }).validateResponses).toBe(false);
  expect(loadConfig({ VALIDATE_RESPONSES: 'true' }).validateResponses).toBe(true);
});
