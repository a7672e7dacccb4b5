/**
 * Keep-alive connections for the worker's attempts: one http(s) Agent per origin (scheme, host,
 * port), so that a busy endpoint's attempts reuse a few open connections instead of opening one
 * each (a TCP handshake, and a TLS one for https, per attempt).
 *
 * - Every new connection still goes through the address policy: the sender passes its checked
 *   `lookup` (server/webhook-delivery/sender.ts) with each request, and the agent hands it to the
 *   socket it opens; an IP literal is judged by the sender before any agent is asked. A reused
 *   connection is one that was judged when it was opened.
 * - Bounded: at most `maxSockets` connections per origin (the attempts beyond wait in the agent's
 *   queue, inside their own deadline), an idle connection is closed after IDLE_SOCKET_MS (below the
 *   5 s that Node's and most servers' keep-alive allow, so that we close first rather than reuse a
 *   connection the receiver is closing), and an origin unused for IDLE_ORIGIN_MS loses its agent.
 *   A disabled or deleted endpoint gets no more attempts, so its origin goes idle and is closed.
 * - `close()` (the worker's stop) destroys every connection.
 */
import http from 'node:http';
import https from 'node:https';

/** An idle connection is closed after this long. */
export const IDLE_SOCKET_MS = 4000;
/** An origin with no attempt for this long loses its agent. */
export const IDLE_ORIGIN_MS = 30_000;

interface OriginAgent {
  agent: http.Agent;
  usedAt: number;
}

export interface OriginAgents {
  /** The agent for `url`'s origin (made on first use). */
  agentFor(url: URL): http.Agent;
  /** Destroys the agents of origins idle for IDLE_ORIGIN_MS (the worker calls it now and then). */
  closeIdle(now?: number): void;
  /** Destroys every agent and its connections. */
  close(): void;
}

export function originAgents(options: { maxSocketsPerOrigin: number }): OriginAgents {
  const agents = new Map<string, OriginAgent>();
  return {
    agentFor(url) {
      const origin = `${url.protocol}//${url.host}`;
      let entry = agents.get(origin);
      if (!entry) {
        const settings: http.AgentOptions = {
          keepAlive: true,
          maxSockets: options.maxSocketsPerOrigin,
          maxFreeSockets: options.maxSocketsPerOrigin,
          // Applies to idle connections only: the agent destroys a free socket that times out; an
          // attempt in flight keeps its own deadline (the sender's).
          timeout: IDLE_SOCKET_MS,
          // The most recently used connection first: the others idle out when traffic drops.
          scheduling: 'lifo',
        };
        const agent = url.protocol === 'https:' ? new https.Agent(settings) : new http.Agent(settings);
        entry = { agent, usedAt: performance.now() };
        agents.set(origin, entry);
      }
      entry.usedAt = performance.now();
      return entry.agent;
    },
    closeIdle(now = performance.now()) {
      for (const [origin, entry] of agents) {
        if (now - entry.usedAt < IDLE_ORIGIN_MS) continue;
        entry.agent.destroy();
        agents.delete(origin);
      }
    },
    close() {
      for (const entry of agents.values()) entry.agent.destroy();
      agents.clear();
    },
  };
}
