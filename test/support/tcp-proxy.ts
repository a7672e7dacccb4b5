/**
 * A TCP proxy between a server and PostgreSQL that a test can cut and restore: cut, it stops
 * listening (new connections are refused) and destroys every connection it carries (each one
 * terminated mid-stream, as when the database host goes away); restored, it listens on the same
 * port again. Or freeze: the connections it carries stay open but carry nothing more, either way,
 * as when the far end is gone without closing them (a node lost behind a balancer, a partition);
 * new connections go through. The shared PostgreSQL itself is never touched.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Connections refused and the open ones terminated, until restore(). */
  cut(): Promise<void>;
  /** The connections open now stop forwarding, without closing; new ones work. */
  freeze(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const listen = (server: Server, port: number) =>
    new Promise<void>((listening, fail) => {
      server.once('error', fail);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', fail);
        listening();
      });
    });
  const make = () =>
    createServer((client) => {
      const upstream = connect(target.port, target.host);
      track(client);
      track(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      const pair: [Socket, Socket] = [client, upstream];
      pairs.add(pair);
      client.once('close', () => {
        pairs.delete(pair);
        upstream.destroy();
      });
      upstream.once('close', () => client.destroy());
    });
  let server: Server | undefined = make();
  await listen(server, 0);
  const port = (server.address() as { port: number }).port;
  const stop = async () => {
    const closing = server;
    server = undefined;
    if (closing) await new Promise<void>((closed) => closing.close(() => closed()));
  };
  return {
    port,
    cut: async () => {
      const stopped = stop();
      for (const socket of sockets) socket.destroy();
      await stopped;
    },
    freeze: () => {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      pairs.clear();
    },
    restore: async () => {
      if (server) return;
      server = make();
      await listen(server, port);
    },
    close: async () => {
      const stopped = stop();
      for (const socket of sockets) socket.destroy();
      await stopped;
    },
  };
}
