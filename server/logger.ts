import { pino, type Logger } from 'pino';

/** JSON logs. The Authorization header is redacted wherever it might appear. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'request.headers.authorization', 'authorization'],
      censor: '[redacted]',
    },
  });
}
