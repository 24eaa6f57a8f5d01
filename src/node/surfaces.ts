// The surfaces the daemon serves beside its API, wired here once for every way the node starts
// (src/node/main.ts): MCP over streamable HTTP at /mcp, and the dashboard (its own listener on
// loopback, and /dashboard/login on the API). Each reaches the node through the one client over
// the unix socket, with its caller's token, so scoping is the API's own.
import { Dashboard, dashboardAddress } from '../dashboard/index.js';
import { mcpHttpHandler } from '../mcp/http.js';
import type { ExtraHandler } from './server.js';

export interface Surfaces {
  /** Handlers of their own for some paths of the API, once the unix socket's path is known. */
  extra: (socketPath: string) => Record<string, ExtraHandler>;
  /** Starts what listens on its own (the dashboard), once the node serves. */
  start(home: string): Promise<void>;
  close(): void;
}

/** `dashboardFlag`: `--dashboard` (else BERTH_DASHBOARD, else 127.0.0.1:7781; `off` for none). */
export function surfaces(dashboardFlag: string | undefined, log: (l: string) => void): Surfaces {
  const where = dashboardAddress(dashboardFlag);
  const dashboard = where ? new Dashboard({ ...where, log }) : undefined;
  return {
    extra: (socketPath) => ({ '/mcp': mcpHttpHandler(socketPath), ...dashboard?.handlers(socketPath) }),
    start: async (home) => dashboard?.start(home),
    close: () => dashboard?.close(),
  };
}
