import { readFileSync } from 'node:fs';
import bundledSpec from '../generated/openapi.json' with { type: 'json' };
import type { Handlers } from './http/handler-types.js';

// Both serialised once; `npm run generate` derives them from spec/ (and `npm run build` copies the
// page). The page (2.6 MB) is read on its first request rather than on every start-up.
let docsPage: string | undefined;
const readDocsPage = () => (docsPage ??= readFileSync(new URL('../generated/docs.html', import.meta.url), 'utf8'));
const openApiDocument = JSON.stringify(bundledSpec);

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
  getDocs: async () => ({
    status: 200,
    text: readDocsPage(),
    contentType: 'text/html',
    headers: { 'Content-Security-Policy': DOCS_POLICY },
  }),
  getOpenApiDocument: async () => ({ status: 200, text: openApiDocument, contentType: 'application/json' }),
} satisfies Partial<Handlers>;
