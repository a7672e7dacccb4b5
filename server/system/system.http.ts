import { readFileSync } from 'node:fs';
import bundledSpec from '../../generated/openapi.json' with { type: 'json' };
import type { Handlers } from '../operations/handler-types.js';
import { StaticRepresentation } from '../shared/static-representation.js';

// Both made once; `npm run generate` derives them from spec/ (and `npm run build` copies the page).
// Each is read or serialised, and compressed, on its first request rather than on every start-up.
const docsPage = new StaticRepresentation('text/html', () => readFileSync(new URL('../../generated/docs.html', import.meta.url)));
const openApiDocument = new StaticRepresentation('application/json', () => JSON.stringify(bundledSpec));

// The page carries its scripts and styles inline; the browser may fetch nothing from another site
// (Redoc's footer points at a logo on Redocly's CDN: it stays unloaded).
const DOCS_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-inline' blob:",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self' blob:",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const systemHandlers = {
  getHealth: async () => ({ status: 200, body: { status: 'ok' } }),
  getDocs: async () => ({ status: 200, representation: docsPage, headers: { 'Content-Security-Policy': DOCS_POLICY } }),
  getOpenApiDocument: async () => ({ status: 200, representation: openApiDocument }),
} satisfies Partial<Handlers>;
