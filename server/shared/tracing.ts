/**
 * Tracing (OpenTelemetry) as the rest of the server sees it: off unless server/telemetry.ts started
 * it from the `OTEL_*` variables (docs/tracing.md). Off, every helper here is one check of
 * `tracer` and then the plain call: no span object, no context object, no propagation work on the
 * hot path, and the SDK is never loaded. Only `@opentelemetry/api` is imported here.
 *
 * Spans other than the request's server span and the webhook delivery's are made only inside a
 * span (`trace.getSpan(context.active())`): a statement of the webhook worker's loop or of the
 * housekeeping purge, outside any request, makes none, so traces are requests and deliveries, not
 * a stream of roots from background polling.
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';

let tracer: Tracer | undefined;

/** Set by server/telemetry.ts when tracing starts (its tracer) and when it stops (undefined). */
export function useTracer(next: Tracer | undefined): void {
  tracer = next;
}

/** Whether tracing was started in this process. */
export function tracingOn(): boolean {
  return tracer !== undefined;
}

/** The tracer, when tracing is on (the request span and the delivery span start their own traces). */
export function activeTracer(): Tracer | undefined {
  return tracer;
}

/** The span of the active context, when tracing is on and there is one. */
function currentSpan(): Span | undefined {
  return tracer && trace.getSpan(context.active());
}

/** A thrown error's `error.type`: its SQLSTATE or Node code when it has one, else its class name. */
export function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.length > 0) return code;
  return (error as Error | null)?.name || 'Error';
}

/** Marks `span` failed by `error` (status ERROR, `error.type`, the exception as an event). */
export function failSpan(span: Span, error: unknown): void {
  span.setAttribute('error.type', errorType(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * Runs `work` in an internal child span of the active span (idempotency, rate-limit and auth
 * steps): the span is active while `work` runs, so its statements are its children, and ends
 * when `work` settles, failed if it threw. Off, or outside any span: `work` alone.
 */
export function inSpan<T>(name: string, attributes: Attributes, work: (span: Span | undefined) => Promise<T>): Promise<T> {
  const parent = currentSpan();
  if (!parent) return work(undefined);
  const span = tracer!.startSpan(name, { kind: SpanKind.INTERNAL, attributes });
  return context.with(trace.setSpan(context.active(), span), async () => {
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

/** A span of the active span (a database statement's, server/db/traced.ts); undefined when off or outside any span. */
export function startChildSpan(name: string, kind: SpanKind, attributes: Attributes): Span | undefined {
  return currentSpan() && tracer!.startSpan(name, { kind, attributes });
}

/**
 * `fn`, bound to the context active now: for a callback Node runs later in a context of its own
 * (a response's 'close' listener), whose log line must still carry the request's trace id. Off:
 * `fn` itself.
 */
export function bindActiveContext<F extends (...args: never[]) => unknown>(fn: F): F {
  return tracer ? context.bind(context.active(), fn) : fn;
}

/**
 * The active span's context as a W3C `traceparent` value, to keep with something that outlives
 * the request (an event, server/events/events.service.ts); null when off or outside any span.
 */
export function activeTraceparent(): string | null {
  if (!currentSpan()) return null;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ?? null;
}

/** The span context a stored `traceparent` names (a remote parent), or undefined for null or a malformed value. */
export function contextOfTraceparent(traceparent: string | null): Context | undefined {
  if (!traceparent) return undefined;
  const extracted = propagation.extract(ROOT_CONTEXT, { traceparent });
  return trace.getSpanContext(extracted) ? extracted : undefined;
}

/** A link to the span a context names. */
export function linkTo(parent: Context, attributes?: Attributes): Link[] {
  const spanContext = trace.getSpanContext(parent);
  return spanContext ? [{ context: spanContext, ...(attributes && { attributes }) }] : [];
}

/** Adds `traceparent` (and `tracestate`) for the active span to outgoing headers; nothing when off. */
export function injectTraceHeaders(headers: Record<string, string>): void {
  if (tracer) propagation.inject(context.active(), headers);
}

/**
 * pino's `mixin` (server/logger.ts, only when tracing is on): a line logged inside a span carries
 * its `trace_id` and `span_id`, as the OpenTelemetry log data model names them.
 */
export function traceLogFields(): Record<string, string> {
  const span = currentSpan();
  if (!span) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  return { trace_id: traceId, span_id: spanId, trace_flags: traceFlags.toString(16).padStart(2, '0') };
}
