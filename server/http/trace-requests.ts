/**
 * The server span of every request, first in the pipeline when tracing is on (server/app.ts
 * leaves it out otherwise: off, a request pays nothing for tracing).
 *
 * - The caller's `traceparent` (W3C Trace Context) is honoured: the span continues its trace.
 * - The span is active while the request is handled, so the steps and statements beneath are its
 *   children (server/shared/tracing.ts, server/db/traced.ts).
 * - Named `{method} {route}` once the operation is known, `route` being the spec's path template
 *   (`/clients/{id}`), never Express's nor the path itself; `http.route` the same, and
 *   `openapi.operation_id` the spec's operationId. A request that matched no operation is named
 *   by its method alone, as the HTTP conventions say.
 * - Stable HTTP attributes: `http.request.method`, `url.path`, `url.scheme`,
 *   `http.response.status_code`, `network.protocol.version`, `client.address`. Never a query
 *   string (`url.query` is left out: the request log never logs query values either), never a
 *   header but the request id.
 * - A 5xx or a request the caller abandoned marks the span failed (`error.type`); a 4xx does not
 *   (the server did its job), as the conventions say of server spans.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { RequestHandler } from 'express';
import { activeTracer } from '../shared/tracing.js';

/** The methods the HTTP conventions name; any other is `_OTHER` (with the original beside it). */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

/** The middleware, or undefined when tracing is off. */
export function traceRequests(): RequestHandler | undefined {
  const tracer = activeTracer();
  if (!tracer) return undefined;
  return (req, res, next) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const known = KNOWN_METHODS.has(req.method);
    const method = known ? req.method : '_OTHER';
    const url = req.originalUrl;
    const mark = url.indexOf('?');
    const span = tracer.startSpan(
      known ? method : 'HTTP',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': method,
          ...(!known && { 'http.request.method_original': req.method }),
          'url.path': mark === -1 ? url : url.slice(0, mark),
          'url.scheme': req.protocol,
          'network.protocol.version': req.httpVersion,
          ...(req.socket.remoteAddress && { 'client.address': req.socket.remoteAddress }),
        },
      },
      parent,
    );
    // 'close' comes once the answer is done, or when the connection went before it was.
    res.once('close', () => {
      const operation = req.operation;
      if (operation) {
        span.updateName(`${method} ${operation.path}`);
        span.setAttribute('http.route', operation.path);
        span.setAttribute('openapi.operation_id', operation.operationId);
      }
      if (req.id) span.setAttribute('http.response.header.x-request-id', [req.id]);
      span.setAttribute('http.response.status_code', res.statusCode);
      if (!res.writableFinished) {
        span.setAttribute('error.type', 'aborted');
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'the caller went away before the answer was sent' });
      } else if (res.statusCode >= 500) {
        span.setAttribute('error.type', String(res.statusCode));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    });
    context.with(trace.setSpan(parent, span), next);
  };
}
