// The surfaces the daemon serves beside its API, wired here once for every way the node starts
// (src/node/main.ts): MCP over streamable HTTP at /mcp. Each reaches the node through the one
// client over the unix socket, with its caller's token, so scoping is the API's own.
import { mcpHttpHandler } from '../mcp/http.js';
import type { ExtraHandler } from './server.js';

export function surfaces(socketPath: string): Record<string, ExtraHandler> {
  return { '/mcp': mcpHttpHandler(socketPath) };
}
