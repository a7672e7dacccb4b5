/**
 * Closing an HTTP server's connections without failing a request (the drain of shutdown.ts).
 *
 * A client may write its next request on a keep-alive connection at any moment, and the server
 * cannot see it coming: closing a connection while it is idle can cross such a request, which the
 * client then sees reset (ECONNRESET, undici's UND_ERR_SOCKET) without knowing whether it ran.
 * Only two closes never cross a request:
 *  - after an answer that said `Connection: close`: the client sends nothing more on it;
 *  - after the connection has stayed idle longer than the server said it would keep it. Every
 *    keep-alive answer says `Keep-Alive: timeout=N` (N = server.keepAliveTimeout in seconds); a
 *    client that honours it stops using the connection before then (undici and fetch 2 s before,
 *    Node's Agent given a `timeout` 1 s before), and Node itself closes an idle connection a
 *    second after N.
 * So the drain, in this order:
 *  1. stops accepting: a new connection is refused. Its client sent nothing, so it can always try
 *     again elsewhere. (Accepting and answering with `Connection: close` instead would never end
 *     under load: each client reconnects after such an answer.)
 *  2. marks every answer not yet begun `Connection: close`: the one each connection is busy with
 *     now, and any request that comes later on a connection still open. Each connection closes
 *     after its next answer.
 *  3. leaves an idle connection to Node, which closes it once idle for the announced time counted
 *     from its last answer. A connection accepted but never used got no announcement, and its
 *     client may be writing its first request right now: it is given the same time, counted from
 *     the drain's start, and closed then unless it is busy (a request on it in the meantime is
 *     answered with `Connection: close`, like any other).
 *  4. is done when no connection is left.
 * Requests pipelined behind the answer that says `Connection: close` are not answered, as with
 * any close; clients pipeline only requests they may send again (RFC 9112, section 9.3.2).
 *
 * Why not a library: http-terminator closes idle connections at once; @godaddy/terminus (through
 * stoppable) ends a connection right after its answer without saying so in it; both are the race
 * above. Nor Node's own server.close(): it closes idle connections at once too
 * (closeIdleConnections), so the listener alone is closed here, with net.Server's close, which
 * leaves connections to end by themselves.
 */
import type http from 'node:http';
import net from 'node:net';

/**
 * `_httpMessage` is the answer Node is writing on a socket, null between answers: the same field
 * Node's own closeIdleConnections reads to tell a busy connection from an idle one.
 */
type HttpSocket = net.Socket & { _httpMessage?: http.ServerResponse | null };

/** Node (20.20) closes an idle connection this long after the keep-alive time it announces. */
const NODE_KEEP_ALIVE_MARGIN_MS = 1000;

export interface ConnectionDrain {
  /** Connections open now. */
  readonly open: number;
  /** Steps 1 to 4 above; resolves once no connection is left. Calls after the first return the same promise. */
  drain(): Promise<void>;
  /** Closes every connection left; says how many were busy with a request (which is cut) and how many were idle. */
  closeAll(): { cut: number; idle: number };
}

/** Tracks the server's connections from now on: call it before the server accepts any. */
export function trackConnections(server: http.Server): ConnectionDrain {
  const connections = new Set<HttpSocket>();
  server.on('connection', (socket: HttpSocket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  const busy = (socket: HttpSocket) => Boolean(socket._httpMessage);
  const closeAfterAnswer = (response: http.ServerResponse) => {
    if (!response.headersSent) response.setHeader('Connection', 'close');
  };
  let drained: Promise<void> | undefined;

  const drain = () =>
    new Promise<void>((done) => {
      let idleTimer: NodeJS.Timeout | undefined;
      // 1. The callback runs once the listener is closed and no connection is left (4).
      net.Server.prototype.close.call(server, () => {
        clearTimeout(idleTimer);
        done();
      });
      // 2. Before the app's own listener, so that the mark is there before anything is written.
      server.prependListener('request', (_request: http.IncomingMessage, response: http.ServerResponse) => closeAfterAnswer(response));
      for (const socket of connections) if (socket._httpMessage) closeAfterAnswer(socket._httpMessage);
      // 3. Each connection idle now is closed, if still idle, once the keep-alive time has passed
      // from now. Node's own timer, counted from the last answer, closes sooner those that have
      // answered before: this one only ever closes those never used.
      const idle = [...connections].filter((socket) => !busy(socket));
      if (idle.length > 0)
        idleTimer = setTimeout(() => {
          for (const socket of idle) if (!busy(socket)) socket.destroy();
        }, server.keepAliveTimeout + NODE_KEEP_ALIVE_MARGIN_MS);
    });

  return {
    get open() {
      return connections.size;
    },
    drain: () => (drained ??= drain()),
    closeAll() {
      const left = [...connections];
      const cut = left.filter(busy).length;
      for (const socket of left) socket.destroy();
      return { cut, idle: left.length - cut };
    },
  };
}
