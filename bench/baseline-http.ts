/**
 * What the two hand-written baselines (bench/bare-server.ts, bench/plain-server.ts) share: a bare
 * node:http server that reads each request's body whole, hands it to `route`, and sends the JSON
 * answer; listening on PORT (any free port by default) with a `listening` line that the benchmark
 * reads, and closing its pool on SIGTERM. Nothing else: no framework, no validation, no logs.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type pg from 'pg';

export type Route = (req: IncomingMessage, body: Buffer) => Promise<[status: number, body: unknown]>;

export function serveBaseline(pool: pg.Pool, route: Route): void {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const [status, body] = await route(req, Buffer.concat(chunks)).catch((error: unknown) => [500, { error: String(error) }] as const);
      const text = JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
    const address = server.address() as { port: number };
    console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${address.port}` }));
  });
  process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
}
