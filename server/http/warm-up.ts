/**
 * The validator compiles lazily on its first request: send it one that fails auth-free, at
 * start-up (node:http rather than fetch, which would load undici for nothing).
 */
import { get as httpGet, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function warmUp(server: Server): Promise<void> {
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((answered) => {
    const request = httpGet({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (response) =>
      response.resume().on('end', answered),
    );
    request.on('error', () => answered());
  });
  await new Promise<void>((closed) => server.close(() => closed()));
}
