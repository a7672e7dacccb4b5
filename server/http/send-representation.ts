/**
 * Sends a handler's StaticRepresentation (server/shared/static-representation.ts): the content
 * coding the client prefers among br and gzip (else the body as it is), its strong ETag, and 304
 * with no body when `If-None-Match` names it. `Cache-Control: no-cache` lets a browser keep the
 * body and ask each time whether it changed, which a 304 answers for a few hundred bytes.
 */
import type { Request, Response } from 'express';
import { ifNoneMatchMatches } from '../shared/etag.js';
import type { ContentCoding, StaticRepresentation } from '../shared/static-representation.js';

/**
 * The coding to send for an `Accept-Encoding` header (RFC 9110 §12.5.3): br or gzip, whichever
 * has the higher weight (br on a tie: it is the smaller), when either is acceptable, listed or
 * through `*`; otherwise identity. No header: identity.
 */
export function chooseCoding(header: string | undefined): ContentCoding {
  if (!header) return 'identity';
  const weights = new Map<string, number>();
  for (const item of header.split(',')) {
    const [name = '', ...params] = item.split(';').map((part) => part.trim().toLowerCase());
    if (!name) continue;
    let weight = 1;
    for (const param of params) {
      const [key, value] = param.split('=').map((part) => part.trim());
      if (key === 'q') weight = Number(value);
    }
    weights.set(name === 'x-gzip' ? 'gzip' : name, Number.isFinite(weight) ? weight : 0);
  }
  const weightOf = (coding: string) => weights.get(coding) ?? weights.get('*') ?? 0;
  const br = weightOf('br');
  const gzip = weightOf('gzip');
  if (br > 0 && br >= gzip) return 'br';
  if (gzip > 0) return 'gzip';
  return 'identity';
}

export async function sendRepresentation(
  req: Request,
  res: Response,
  status: number,
  representation: StaticRepresentation,
  headers: Record<string, string> = {},
): Promise<void> {
  const { coding, body, etag } = await representation.variant(chooseCoding(req.headers['accept-encoding']));
  const validators = { ETag: etag, Vary: 'Accept-Encoding', 'Cache-Control': 'no-cache' };
  if (ifNoneMatchMatches(req.headers['if-none-match'], etag)) {
    res.writeHead(304, validators);
    res.end();
    return;
  }
  res.writeHead(status, {
    ...headers,
    ...validators,
    'Content-Type': `${representation.contentType}; charset=utf-8`,
    'Content-Length': body.length,
    ...(coding !== 'identity' && { 'Content-Encoding': coding }),
  });
  res.end(body);
}
