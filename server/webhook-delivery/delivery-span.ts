/**
 * The span of one webhook delivery attempt, when tracing is on (docs/tracing.md).
 *
 * The event keeps the `traceparent` of the request whose change wrote it (events.trace_context).
 * The attempt's span, `webhook.deliver`, is a CLIENT span that continues that trace (its parent is
 * the stored context) and also links to it: a tracing backend shows the delivery inside the
 * request's trace, and the link says which request caused it even where a backend starts a new
 * trace for work done later. The attempt is sent inside the span, so the `traceparent` the
 * receiver gets is the delivery span's, with the request's trace id; the statements that record
 * it are its children. Each attempt, retries included, is its own span in the same trace. An
 * event written with tracing off (no stored context) starts a trace of its own.
 *
 * Attributes: `http.request.method` POST, `url.full` (the endpoint's URL without its query, which
 * may carry a receiver's token, and without user info), `server.address`, `server.port`,
 * `http.response.status_code`, `error.type` (`timeout`, `connection refused`..., or the status),
 * and `webhook.event.id`, `webhook.event.type`, `webhook.endpoint.id`, `webhook.delivery.id`,
 * `webhook.attempt`.
 */
import { type Attributes, context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { activeTracer, contextOfTraceparent, failSpan, linkTo } from '../shared/tracing.js';
import type { ClaimedDelivery } from './deliveries.queries.js';
import type { AttemptOutcome } from './sender.js';

function urlAttributes(address: string): Attributes {
  try {
    const url = new URL(address);
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    return { 'url.full': `${url.protocol}//${url.host}${url.pathname}`, 'server.address': url.hostname, 'server.port': port };
  } catch {
    return {};
  }
}

/** Runs `work` (one attempt: send and record) in its delivery span; off, `work` alone. */
export function inDeliverySpan<T>(delivery: ClaimedDelivery, work: (span: Span | undefined) => Promise<T>): Promise<T> {
  const tracer = activeTracer();
  if (!tracer) return work(undefined);
  const stored = contextOfTraceparent(delivery.eventTraceContext);
  const parent = stored ?? ROOT_CONTEXT;
  const span = tracer.startSpan(
    'webhook.deliver',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': 'POST',
        ...urlAttributes(delivery.url),
        'webhook.event.id': delivery.event.id,
        'webhook.event.type': delivery.event.type,
        'webhook.endpoint.id': delivery.endpointId,
        'webhook.delivery.id': delivery.id,
        'webhook.attempt': delivery.attempts + 1,
      },
      links: stored ? linkTo(stored) : [],
    },
    parent,
  );
  return context.with(trace.setSpan(parent, span), async () => {
    try {
      return await work(span);
    } catch (error) {
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** What the attempt came to, on its span: a failure (no answer, or not a 2xx) marks it failed. */
export function describeAttempt(span: Span, outcome: AttemptOutcome): void {
  if (outcome.statusCode !== null) span.setAttribute('http.response.status_code', outcome.statusCode);
  if (outcome.succeeded) return;
  span.setAttribute('error.type', outcome.error ?? String(outcome.statusCode));
  span.setStatus({ code: SpanStatusCode.ERROR, ...(outcome.error && { message: outcome.error }) });
}
