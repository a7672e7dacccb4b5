/** Which failures are "the database is away" (503) and which are not (a bug: 500). */
import { describe, expect, it } from 'vitest';
import {
  databaseFault,
  isDatabaseUnavailable,
  isReadOnlyDatabase,
  isStatementTimeout,
  serviceUnavailable,
} from '../../server/db/faults.js';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('isDatabaseUnavailable', () => {
  it.each([
    ['refused', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['reset', withCode('ECONNRESET')],
    ['terminated by an administrator (57P01)', withCode('57P01', 'terminating connection due to administrator command')],
    ['crash shutdown (57P02)', withCode('57P02')],
    ['starting up (57P03)', withCode('57P03', 'the database system is starting up')],
    ['a hot standby not yet accepting connections (57P03)', withCode('57P03', 'the database system is not yet accepting connections')],
    ['a write on a read-only node (25006)', withCode('25006', 'cannot execute INSERT in a read-only transaction')],
    ['a write on a standby (25006)', withCode('25006', 'cannot execute nextval() during recovery')],
    ['a transaction id asked of a standby (XX000)', withCode('XX000', 'cannot assign TransactionIds during recovery')],
    ['too many connections (53300)', withCode('53300')],
    ['a connection exception (08006)', withCode('08006')],
    ['a lost connection', new Error('Connection terminated unexpectedly')],
    ['a client that is not queryable', new Error('Client has encountered a connection error and is not queryable')],
    ['a pool wait that ran out', new Error('timeout exceeded when trying to connect')],
    ['every address of localhost refused', new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')])],
    ['a cause that is one of these', new Error('wrapped', { cause: withCode('57P01') })],
  ])('%s: yes', (_name, error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it.each([
    ['a unique violation (23505)', withCode('23505')],
    ['a syntax error (42601)', withCode('42601')],
    ['a bad value (22P02)', withCode('22P02')],
    ['another internal error (XX000)', withCode('XX000', 'could not open file')],
    ['a plain bug', new TypeError("Cannot read properties of undefined (reading 'id')")],
    ['a statement past its time limit (57014: the database is there)', withCode('57014')],
    ['not an error', 'ECONNREFUSED'],
    ['nothing', undefined],
  ])('%s: no', (_name, error) => {
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});

it('isReadOnlyDatabase: 25006 and a standby asked for a transaction id, nothing else', () => {
  expect(isReadOnlyDatabase(withCode('25006'))).toBe(true);
  expect(isReadOnlyDatabase(new Error('wrapped', { cause: withCode('25006') }))).toBe(true);
  expect(isReadOnlyDatabase(withCode('XX000', 'cannot assign TransactionIds during recovery'))).toBe(true);
  expect(isReadOnlyDatabase(withCode('57P01'))).toBe(false);
  expect(isReadOnlyDatabase(withCode('ECONNREFUSED'))).toBe(false);
});

it('serviceUnavailable is a 503 service_unavailable with Retry-After in the envelope', () => {
  const error = serviceUnavailable();
  expect(error.status).toBe(503);
  expect(error.details.headers).toEqual({ 'Retry-After': '2' });
  expect(error.toBody()).toEqual({ error: { code: 'service_unavailable', message: expect.stringContaining('Retry in 2 seconds') } });
});

describe('databaseFault', () => {
  it('answers a statement past statement_timeout (57014) 503 with Retry-After, saying the request took too long', () => {
    for (const error of [
      withCode('57014', 'canceling statement due to statement timeout'),
      new Error('wrapped', { cause: withCode('57014') }),
    ]) {
      expect(isStatementTimeout(error)).toBe(true);
      const answer = databaseFault(error)!;
      expect(answer.status).toBe(503);
      expect(answer.details.headers).toEqual({ 'Retry-After': '2' });
      expect(answer.toBody()).toEqual({
        error: { code: 'service_unavailable', message: expect.stringMatching(/took too long.*Retry in 2 seconds/) },
      });
      expect(answer.message).not.toMatch(/cannot be reached/);
    }
  });

  it('answers a database that is away 503 as before, and anything else not at all (a 500)', () => {
    expect(databaseFault(withCode('57P01'))?.toBody()).toEqual({
      error: { code: 'service_unavailable', message: expect.stringContaining('cannot be reached') },
    });
    expect(isStatementTimeout(withCode('57P01'))).toBe(false);
    expect(databaseFault(withCode('23505'))).toBeUndefined();
    expect(databaseFault(new TypeError('bug'))).toBeUndefined();
  });
});
