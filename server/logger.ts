import { pino, type Logger } from 'pino';
import { traceLogFields } from './shared/tracing.js';

/**
 * JSON logs to stdout. The Authorization header is redacted wherever it might appear. Writes are
 * asynchronous (one write for many lines when requests pile up, rather than a write per line on
 * the request path); `flush` writes out what is pending, for a clean exit. `traceIds`: tracing is
 * on (server/telemetry.ts), so lines logged inside a span carry its ids.
 */
export function createLogger(level: string, options: { traceIds?: boolean } = {}): Logger & { flushNow(): void } {
  const destination = pino.destination({ dest: 1, sync: false });
  const logger = pino(
    {
      level,
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', 'request.headers.authorization', 'authorization'],
        censor: '[redacted]',
      },
      // With tracing on, a line logged inside a span carries its trace_id and span_id; off, no mixin runs at all.
      ...(options.traceIds && { mixin: traceLogFields }),
    },
    destination,
  );
  return Object.assign(logger, {
    flushNow: () => {
      try {
        destination.flushSync();
      } catch {
        // Nothing was pending, or stdout is gone: nothing more to write.
      }
    },
  });
}
