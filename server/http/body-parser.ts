/**
 * Reads JSON bodies. Unlike express.json it keeps decimals exact: a JSON number sent for a field
 * that takes a decimal (money) reaches the handler as the text it was written as, so `0.1` is one
 * tenth and 20 digits are 20 digits, never a binary float. Such numbers then meet the same pattern
 * as decimal strings, which refuses exponents, signs and too many decimal places.
 */
import { isUtf8 } from 'node:buffer';
import express, { type RequestHandler } from 'express';
import { parse as parseLossless, type LosslessNumber } from 'lossless-json';
import typeis from 'type-is';
import { ApiError, validationFailed } from '../shared/errors.js';

export const BODY_LIMIT_BYTES = 256 * 1024;

/**
 * Bodies whose bytes are not UTF-8 are refused, never decoded with U+FFFD in place of the bad
 * bytes (which would store something the caller did not send). body-parser decodes as it reads;
 * `verify` sees the bytes first and marks the request.
 */
const NOT_UTF8 = Symbol('body is not UTF-8');
const readText = express.text({
  type: () => true,
  limit: BODY_LIMIT_BYTES,
  defaultCharset: 'utf-8',
  verify: (req, _res, bytes, encoding) => {
    if (/^utf-?8$/i.test(encoding) && !isUtf8(bytes)) (req as unknown as Record<symbol, boolean>)[NOT_UTF8] = true;
  },
});

function parseJson(text: string, decimalFields: ReadonlySet<string>): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw validationFailed({ body: 'is not valid JSON' });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const record = value as Record<string, unknown>;
  const hasNumericDecimal = [...decimalFields].some((field) => typeof record[field] === 'number');
  if (!hasNumericDecimal) return value;
  // Only now pay for the lossless parser: read the numbers of decimal fields as written.
  const exact = parseLossless(text) as Record<string, unknown>;
  for (const field of decimalFields) {
    const number = exact[field] as LosslessNumber | undefined;
    if (number && typeof number === 'object' && number.isLosslessNumber) record[field] = number.value;
  }
  return value;
}

/** `bodyRequired`: the operation has a required request body, so its absence is a 400 naming `body`. */
export function jsonBody(decimalFields: ReadonlySet<string>, bodyRequired: boolean): RequestHandler {
  return (req, res, next) => {
    // An empty body (`Content-Length: 0`, as fetch sends a POST without one) is no body.
    if (!typeis.hasBody(req) || (!bodyRequired && req.headers['content-length'] === '0')) {
      req.body = undefined;
      return next(bodyRequired ? validationFailed({ body: 'is required: send a JSON object' }) : undefined);
    }
    if (!typeis(req, ['application/json', 'application/*+json'])) {
      return next(new ApiError('unsupported_media_type', 'The request body must be application/json.'));
    }
    readText(req, res, (error?: unknown) => {
      if (error) return next(error);
      if ((req as unknown as Record<symbol, boolean>)[NOT_UTF8]) return next(validationFailed({ body: 'is not valid UTF-8' }));
      try {
        const text = typeof req.body === 'string' ? req.body : '';
        if (text.trim() === '') {
          req.body = undefined;
          return next(bodyRequired ? validationFailed({ body: 'is required: send a JSON object' }) : undefined);
        }
        req.body = parseJson(text, decimalFields);
        next();
      } catch (parseError) {
        next(parseError);
      }
    });
  };
}
