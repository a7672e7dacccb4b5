/**
 * `npm run build`'s last step: dist/server/main.js as one bundled file (esbuild), so that starting
 * the server does not resolve, read and link some six hundred modules one by one (the better part
 * of a second on this machine; see README, Performance). tsc still compiles everything else to
 * dist/, and checks all of it.
 *
 * PGlite stays outside the bundle (it finds its WebAssembly next to its own files), as do
 * pg-native (pg's optional native driver) and the tracing SDK (below). Packages inside the bundle that `require` Node's
 * built-ins get a real `require`.
 *
 * The webhook worker's entry (`npm run worker`) is bundled the same way, beside it:
 * dist/server/worker-main.js.
 *
 * An argument bundles elsewhere (test/topology bundles into dist/topology/ so as not to race the
 * other test that bundles); the worker then goes into the same folder.
 */
import { dirname, join } from 'node:path';
import { build } from 'esbuild';

/**
 * The OpenTelemetry SDK, loaded (a dynamic import) only when tracing is on (server/telemetry.ts):
 * outside the bundle, from node_modules, so that a server without tracing does not even parse it.
 * `@opentelemetry/api` is inside: the hot path calls it, and its copies share one global state by
 * design, so the SDK's copy and the bundle's see the same provider and context.
 */
const TRACING_SDK = [
  '@opentelemetry/sdk-trace-node',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/resources',
  '@opentelemetry/core',
  '@opentelemetry/exporter-trace-otlp-proto',
  '@opentelemetry/exporter-trace-otlp-http',
];

const mainFile = process.argv[2] ?? 'dist/server/main.js';
const bundles = [
  { entry: 'server/main.ts', outfile: mainFile },
  { entry: 'server/worker-main.ts', outfile: join(dirname(mainFile), 'worker-main.js') },
];

await Promise.all(bundles.map(bundle));

async function bundle({ entry, outfile }: { entry: string; outfile: string }) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    allowOverwrite: true,
    sourcemap: true,
    minifyWhitespace: true,
    minifySyntax: true,
    // Some packages look at their classes' names (rate-limiter-flexible tells a pg Pool by it).
    keepNames: true,
    external: ['@electric-sql/pglite', 'pg-native', ...TRACING_SDK],
    banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
    logLevel: 'warning',
  });
}
