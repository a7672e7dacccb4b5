/**
 * Starting and stopping tracing (docs/tracing.md). Off unless the standard `OTEL_*` variables ask
 * for it; the SDK is loaded (a dynamic `import()`) only then, so a server without tracing never
 * loads it, and its hot path meets only the checks of server/shared/tracing.ts.
 *
 * On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`; several, comma separated),
 * or when it is unset and an OTLP endpoint is (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; OpenTelemetry's own default exporter is `otlp`). Off when
 * neither, when `OTEL_TRACES_EXPORTER=none`, or when `OTEL_SDK_DISABLED=true`.
 *
 * Everything else is the SDK's own reading of the standard variables: the OTLP exporter's endpoint,
 * headers, timeout and compression (`OTEL_EXPORTER_OTLP_*`), the protocol (`http/protobuf`, the
 * default, or `http/json`; `grpc` is refused), the sampler (`OTEL_TRACES_SAMPLER`,
 * `OTEL_TRACES_SAMPLER_ARG`; parent-based always-on by default), the batch processor
 * (`OTEL_BSP_*`), span limits, and the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
 * Propagation is W3C Trace Context (`traceparent`, `tracestate`).
 */
import { context, DiagLogLevel, diag, propagation, trace } from '@opentelemetry/api';
import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import { useTracer } from './shared/tracing.js';

type ExporterName = 'otlp' | 'console';
type OtlpProtocol = 'http/protobuf' | 'http/json';

/** What the environment asks for. */
export interface TracingSettings {
  exporters: ExporterName[];
  protocol: OtlpProtocol;
}

const TRUE = /^\s*true\s*$/i;

/**
 * The tracing the environment asks for, or undefined (off). Throws, with what to change, on a value
 * this server cannot honour (an unknown exporter, the gRPC protocol).
 */
export function tracingSettingsFromEnv(env: NodeJS.ProcessEnv): TracingSettings | undefined {
  if (TRUE.test(env.OTEL_SDK_DISABLED ?? '')) return undefined;
  const listed = env.OTEL_TRACES_EXPORTER?.trim();
  const names = listed
    ? listed
        .split(',')
        .map((name) => name.trim().toLowerCase())
        .filter(Boolean)
    : env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
      ? ['otlp']
      : [];
  if (names.includes('none')) return undefined;
  const unknown = names.filter((name) => name !== 'otlp' && name !== 'console');
  if (unknown.length > 0)
    throw new Error(`OTEL_TRACES_EXPORTER: ${unknown.join(', ')} is not an exporter this server has; use otlp, console or none.`);
  if (names.length === 0) return undefined;
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf').trim();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json')
    throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL: ${protocol} is not supported here; use http/protobuf (the default) or http/json.`);
  return { exporters: [...new Set(names)] as ExporterName[], protocol };
}

export interface TracingOptions {
  /** What to export to, from the environment (tracingSettingsFromEnv). */
  settings?: TracingSettings;
  /** Tests: export to this exporter too, each span as it ends (an InMemorySpanExporter). */
  exporter?: SpanExporter;
  /** `service.name` unless OTEL_SERVICE_NAME says otherwise. */
  serviceName?: string;
  /** Where the SDK's own complaints go (an unreachable collector), at warn. */
  logger?: Logger;
}

export interface Tracing {
  /** Exports what is pending, stops, and unregisters everything: tracing is off again. */
  shutdown(): Promise<void>;
}

/** Starts tracing in this process: the provider, the context manager and the propagator, globally. */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const [
    { NodeTracerProvider },
    { BatchSpanProcessor, SimpleSpanProcessor, ConsoleSpanExporter },
    resources,
    { W3CTraceContextPropagator },
  ] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ]);
  const { logger } = options;
  if (logger) {
    const warn = (message: string, ...args: unknown[]) => logger.warn({ otel: args }, message);
    diag.setLogger({ error: warn, warn, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  }
  const processors: SpanProcessor[] = [];
  const settings = options.settings ?? { exporters: [], protocol: 'http/protobuf' };
  for (const name of settings.exporters) {
    if (name === 'console') processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    else processors.push(new BatchSpanProcessor(await otlpExporter(settings.protocol)));
  }
  if (options.exporter) processors.push(new SimpleSpanProcessor(options.exporter));
  const resource = resources
    .resourceFromAttributes({ 'service.name': options.serviceName ?? 'clients-api' })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: processors });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  useTracer(provider.getTracer('clients-api'));
  return {
    async shutdown() {
      useTracer(undefined);
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
      diag.disable();
    },
  };
}

async function otlpExporter(protocol: OtlpProtocol): Promise<SpanExporter> {
  // Each reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT and _COMPRESSION itself.
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
}
