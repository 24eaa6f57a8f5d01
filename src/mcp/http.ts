// MCP over streamable HTTP, at /mcp on the daemon. Stateless: each request gets its own
// server and transport, and reaches the node through the one client with the caller's own
// token, so a scoped token's reach is the same here as anywhere.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Berth } from '../sdk/berth.js';
import { createMcpServer } from './tools.js';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse, token: string | undefined) => Promise<void>;

/** A handler for /mcp, talking to the node at `socketPath`. */
export function mcpHttpHandler(socketPath: string): HttpHandler {
  return async (req, res, token) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'this MCP endpoint is stateless: POST only' }, id: null }));
      return;
    }
    // The daemon's own socket, directly: never a daemon started from inside the daemon.
    const berth = await Berth.connect({ socketPath, token, autostart: false });
    const server = createMcpServer(berth);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
      berth.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
}
