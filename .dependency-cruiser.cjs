/**
 * The layers of server/, which only look down. Every file under server/ (and generated/) is in
 * exactly one layer, by the folder it sits in (or, at the top, its name): LAYERS lists them from
 * the top, and a file may import only files of its own layer or of a layer below it. So a folder
 * never imports a folder above it, whatever the file: there is no file whose place in the layers
 * depends on its name but for the few at the top. docs/architecture.md explains each layer.
 *
 * Inside a layer, by file name (every folder alike):
 *   handlers (*.http.ts) → services (any other file) → queries (*.queries.ts)
 * A handler is imported only by the wiring (server/handlers.ts); a queries file imports only
 * queries files, db/ and the bottom layer.
 *
 * `npm run lint:deps` (part of `npm run lint`, run by CI) fails on any import that breaks a rule
 * here, and on any file of server/ that is in no layer; test/unit/layers.test.ts plants upward
 * imports in a copy of the tree and checks that it does.
 */
const LAYERS = [
  // Starts a process: the API server, the webhook worker, the CLI.
  ['entry', '^server/(main|worker-main|cli)\\.ts$'],
  // Builds a process's parts once and hands each what it needs.
  ['wiring', '^server/(app|handlers|config|telemetry|production-mode)\\.ts$|^server/(lifecycle|health|metrics)/'],
  // The request pipeline and the router: knows no resource (handlers are given to it).
  ['http', '^server/http/'],
  // Who a request acts for (reads tokens).
  ['auth', '^server/auth/'],
  // The resources, each a folder: handlers, services, queries.
  ['contacts', '^server/contacts/'],
  ['clients', '^server/clients/'],
  ['system', '^server/system/'],
  ['webhook-endpoints', '^server/webhook-endpoints/'],
  ['webhook-delivery', '^server/webhook-delivery/'],
  ['events', '^server/events/'],
  ['tokens', '^server/tokens/'],
  // What a handler is (types from the spec), between the router and the resources.
  ['operations', '^server/operations/'],
  // What every resource's write and request use.
  ['rate-limit', '^server/rate-limit/'],
  ['idempotency', '^server/idempotency/'],
  ['plans', '^server/plans/'],
  ['orgs', '^server/orgs/'],
  ['db', '^server/db/'],
  // The bottom: errors, ETags, what the spec declares, the tenant's type, the logger, generated/.
  ['shared', '^server/(shared/|logger\\.ts$|types\\.d\\.ts$)|^generated/'],
];

const any = (paths) => paths.map((path) => `(?:${path})`).join('|');

const layerRules = LAYERS.slice(1).map(([name, path], i) => ({
  name: `layer-${name}-looks-down-only`,
  comment: `${name} must not import a layer above it (${LAYERS.slice(0, i + 1)
    .map(([above]) => above)
    .join(', ')})`,
  severity: 'error',
  from: { path },
  to: { path: any(LAYERS.slice(0, i + 1).map(([, above]) => above)) },
}));

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'An import cycle', from: {}, to: { circular: true } },
    {
      name: 'layer-entry-is-the-top',
      comment: 'Nothing imports an entry point',
      severity: 'error',
      from: {},
      to: { path: LAYERS[0][1] },
    },
    ...layerRules,
    {
      name: 'in-a-layer',
      comment: 'Every file under server/ is in one of the layers of .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^server/', pathNot: any(LAYERS.map(([, path]) => path)) },
      to: {},
    },
    {
      name: 'handlers-only-from-the-wiring',
      comment: 'A handler (*.http.ts) is imported only by server/handlers.ts: services and queries never call one',
      severity: 'error',
      from: { pathNot: '^server/handlers\\.ts$' },
      to: { path: '^server/.+\\.http\\.ts$' },
    },
    {
      name: 'queries-look-down-only',
      comment: 'A queries file imports only queries files, db/ and the bottom layer',
      severity: 'error',
      from: { path: '^server/.+\\.queries\\.ts$' },
      to: { path: '^server/', pathNot: `\\.queries\\.ts$|^server/db/|${LAYERS[LAYERS.length - 1][1]}` },
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
