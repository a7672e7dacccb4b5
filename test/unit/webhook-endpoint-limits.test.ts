/**
 * The adaptive limit per endpoint (server/webhook-delivery/endpoint-limits.ts): additive increase
 * on quick successes while the endpoint uses its limit, one halving per round of failures that say
 * the receiver is overloaded (timeouts, connection failures, 429, 5xx), never below 1 nor above the
 * ceiling; other answers leave it alone.
 */
import { expect, it } from 'vitest';
import { endpointLimits, START_LIMIT } from '../../server/webhook-delivery/endpoint-limits.js';
import type { AttemptOutcome } from '../../server/webhook-delivery/sender.js';

const quick: AttemptOutcome = { statusCode: 204, error: null, succeeded: true, durationMs: 5 };
const slow: AttemptOutcome = { statusCode: 200, error: null, succeeded: true, durationMs: 4000 };
const timeout: AttemptOutcome = { statusCode: null, error: 'timeout', succeeded: false, durationMs: 10_000 };
const busy: AttemptOutcome = { statusCode: 503, error: null, succeeded: false, durationMs: 5 };
const tooMany: AttemptOutcome = { statusCode: 429, error: null, succeeded: false, durationMs: 5 };
const refused: AttemptOutcome = { statusCode: 400, error: null, succeeded: false, durationMs: 5 };

function harness(ceiling = 64) {
  let time = 0;
  const limits = endpointLimits({ ceiling, quickMs: 2500, now: () => time });
  /** A round: as many attempts at once as the limit allows, started together, ended with `outcome`. */
  const round = (outcome: AttemptOutcome) => {
    const begun = Array.from({ length: limits.limitOf('e') }, () => limits.started('e'));
    time += 10;
    for (const start of begun) limits.finished('e', start, outcome);
    time += 10;
    return limits.limitOf('e');
  };
  return { limits, round };
}

it('starts at 4, grows by one per quick success of a busy endpoint, up to the ceiling', () => {
  const { limits, round } = harness();
  expect(limits.limitOf('e')).toBe(START_LIMIT);
  // Each success while at least half the limit was in flight adds one: most of a full round does.
  const grown = [round(quick), round(quick), round(quick)];
  expect(grown[0]).toBeGreaterThan(START_LIMIT);
  expect(grown[1]).toBeGreaterThan(grown[0]!);
  expect(grown[2]).toBeGreaterThan(grown[1]!);
  for (let i = 0; i < 20; i++) round(quick);
  expect(limits.limitOf('e')).toBe(64);
  expect(limits.summary()).toEqual({ endpoints: 1, min: 64, max: 64, mean: 64 });
});

it('an endpoint that is barely used does not grow (one attempt at a time, limit 4)', () => {
  const { limits } = harness();
  for (let i = 0; i < 50; i++) limits.finished('e', limits.started('e'), quick);
  expect(limits.limitOf('e')).toBe(START_LIMIT);
});

it('halves once per round of timeouts, 5xx or 429, down to 1 and not below', () => {
  const { limits, round } = harness();
  for (let i = 0; i < 30; i++) round(quick);
  expect(limits.limitOf('e')).toBe(64);
  expect(round(timeout)).toBe(32);
  expect(round(busy)).toBe(16);
  expect(round(tooMany)).toBe(8);
  expect(round(timeout)).toBe(4);
  expect(round(timeout)).toBe(2);
  expect(round(timeout)).toBe(1);
  expect(round(timeout)).toBe(1);
  // Back to answering quickly: it grows again from 1.
  expect(round(quick)).toBe(2);
  expect(round(quick)).toBeGreaterThan(2);
});

it('a 4xx and a slow success leave it as it is; the ceiling bounds the start too', () => {
  const { round } = harness();
  expect(round(refused)).toBe(START_LIMIT);
  expect(round(slow)).toBe(START_LIMIT);
  expect(harness(2).limits.limitOf('e')).toBe(2);
});

it('an endpoint this worker has not attempted starts from the limit learnt by the others, within 1 and the ceiling, and then learns for itself', () => {
  const { limits, round } = harness();
  // Nothing recorded with the endpoint: START_LIMIT, and nothing adopted.
  expect(limits.limitOf('fresh', null)).toBe(START_LIMIT);
  expect(limits.summary().endpoints).toBe(0);
  // Another worker had brought it to 40: this one starts there (not at 4), and keeps it as its own.
  expect(limits.limitOf('e', 40)).toBe(40);
  expect(limits.limitOf('e')).toBe(40);
  expect(round(timeout)).toBe(20);
  // Once this worker has its own view, what the others recorded no longer moves it.
  expect(limits.limitOf('e', 64)).toBe(20);
  // A failing endpoint's low limit is adopted too; a recorded limit above this worker's ceiling is cut to it.
  expect(limits.limitOf('failing', 1)).toBe(1);
  expect(harness(16).limits.limitOf('e', 40)).toBe(16);
});
