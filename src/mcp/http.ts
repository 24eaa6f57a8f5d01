// MCP over streamable HTTP, at /mcp on the daemon. Stateless: each request gets its own
// server and transport, and reaches the node through the one client with the caller's own
// token, so a scoped token's reach is the same here as anywhere. The client (and the
// environments it has named) is kept per token, so a request costs no extra round trips; the
// node still checks the token on every request it makes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Berth } from '../sdk/berth.js';
import { createMcpServer, type EnvCache } from './tools.js';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse, token: string | undefined) => Promise<void>;

/** Tokens whose client is kept; past that the least recently used goes (its idle sockets close by themselves). */
const KEPT = 64;

interface Caller {
  berth: Berth;
  envs: EnvCache;
}

/** A handler for /mcp, talking to the node at `socketPath`. */
export function mcpHttpHandler(socketPath: string): HttpHandler {
  const callers = new Map<string, Promise<Caller>>();
  const callerFor = (token: string | undefined): Promise<Caller> => {
    const key = token ?? '';
    const known = callers.get(key);
    if (known) {
      callers.delete(key);
      callers.set(key, known);
      return known;
    }
    // The daemon's own socket, directly: never a daemon started from inside the daemon.
    const made = Berth.connect({ socketPath, token, autostart: false }).then((berth) => ({ berth, envs: new Map() }));
    made.catch(() => callers.delete(key));
    callers.set(key, made);
    if (callers.size > KEPT) callers.delete(callers.keys().next().value!);
    return made;
  };
  return async (req, res, token) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'this MCP endpoint is stateless: POST only' }, id: null }));
      return;
    }
    const { berth, envs } = await callerFor(token);
    const server = createMcpServer(berth, envs);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
}
