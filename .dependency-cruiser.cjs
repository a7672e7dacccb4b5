/**
 * The layers of server/, which only look down:
 *   entry (main.ts, worker-main.ts, cli.ts) → wiring (app.ts, handlers.ts) → router (http/) → handlers (*.http.ts)
 *   → services → queries (*.queries.ts) → database (db/)
 * shared/ (errors, ETags, what the spec declares), logger.ts and generated/ are below
 * them all and import none of them. docs/architecture.md explains each layer. `npm run lint:deps`
 * (part of `npm run lint`, run by CI) fails on any import that breaks a rule here.
 */
const layer = {
  entry: '^server/(main|worker-main|cli|config)\\.ts$',
  wiring: '^server/(app|handlers)\\.ts$',
  router: '^server/http/(?!handler-types\\.ts$)',
  handler: '^server/(.+\\.http\\.ts|http/handler-types\\.ts)$',
  queries: '^server/.+\\.queries\\.ts$',
  database: '^server/db/',
  shared: '^server/(shared/|logger\\.ts$)|^generated/',
};
// server/types.d.ts (Express's Request, augmented) is in no layer. Everything else under server/ is a service (auth, idempotency, plans, rate limits, the resources' services and mappers).
const service = `^server/(?!(main|worker-main|cli|config|app|handlers|logger)\\.ts$|types\\.d\\.ts$|http/|db/|shared/)(?!.+\\.(http|queries)\\.ts$)`;

const above = (name, upper) => ({
  name: `${name}-looks-down-only`,
  comment: `${name} must not import a layer above it`,
  severity: 'error',
  from: { path: layer[name] ?? service },
  to: { path: upper },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'An import cycle', from: {}, to: { circular: true } },
    above('router', `${layer.entry}|${layer.wiring}`),
    above('handler', `${layer.entry}|${layer.wiring}|${layer.router}`),
    { ...above('service', `${layer.entry}|${layer.wiring}|${layer.router}|${layer.handler}`), from: { path: service } },
    above('queries', `${layer.entry}|${layer.wiring}|${layer.router}|${layer.handler}|${service}`),
    above('database', `${layer.entry}|${layer.wiring}|${layer.router}|${layer.handler}|${service}|${layer.queries}`),
    {
      name: 'shared-imports-nothing-above',
      comment: 'shared/, the logger and generated/ are the bottom: they import no other part of server/',
      severity: 'error',
      from: { path: layer.shared },
      to: { path: '^server/', pathNot: layer.shared },
    },
    {
      name: 'server-is-not-the-tests',
      severity: 'error',
      from: { path: '^server/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
