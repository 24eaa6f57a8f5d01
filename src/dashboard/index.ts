// The supervision dashboard as a surface of the node: a browser listener on loopback, and
// `/dashboard/login` on the node's API, where a caller holding the node's own token gets a
// one-time login link. It reaches the node only through the one client, like every surface.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import { NodeClient } from '../client/client.js';
import { BerthError } from '../core/errors.js';
import { loadAssets } from './assets.js';
import { Feed } from './feed.js';
import { createDashboardServer, DASHBOARD_HOST } from './server.js';
import { Sessions } from './session.js';
import { Sources } from './sources.js';

export const DEFAULT_DASHBOARD = '127.0.0.1:7781';

export type HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse, token: string | undefined) => Promise<void>;

export interface DashboardOptions {
  /** HOST:PORT on loopback; port 0 picks one (and the next start tries the same again). */
  listen: string;
  /** Whether `listen` was asked for: when it was not and the port is taken, the node runs without a dashboard. */
  explicit: boolean;
  log: (l: string) => void;
}

/** The address to listen on: `--dashboard`, else BERTH_DASHBOARD, else 127.0.0.1:7781; `off` for none. */
export function dashboardAddress(flag: string | undefined): { listen: string; explicit: boolean } | null {
  const v = flag ?? process.env.BERTH_DASHBOARD;
  if (v === 'off' || v === 'none' || v === '0') return null;
  const listen = v || DEFAULT_DASHBOARD;
  const m = /^(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[2]) > 65535) {
    throw new BerthError(
      'usage',
      `invalid dashboard address ${listen}`,
      'the dashboard listens on loopback only: 127.0.0.1:PORT (0 picks a port), or off',
    );
  }
  return { listen, explicit: v !== undefined && v !== '' };
}

function listenOn(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export class Dashboard {
  private server: http.Server | undefined;
  private feed: Feed | undefined;
  private sources: Sources | undefined;
  private sessions: Sessions | undefined;
  private socketPath: string | undefined;
  /** The page's address once it listens. */
  url: string | undefined;

  constructor(private readonly o: DashboardOptions) {}

  /** The node API's extra paths; given the node's socket when the daemon makes its server. */
  handlers(socketPath: string): Record<string, HttpHandler> {
    this.socketPath = socketPath;
    return { '/dashboard/login': (req, res, token) => this.login(req, res, token) };
  }

  /** Listens and starts following the nodes; call once the node answers on its socket. */
  async start(home: string): Promise<void> {
    if (!this.socketPath) throw new BerthError('internal', 'the dashboard was not wired into the daemon');
    this.sessions = new Sessions(home);
    this.sources = new Sources(this.socketPath);
    this.feed = new Feed(this.sources, this.o.log);
    const server = createDashboardServer({
      sessions: this.sessions,
      sources: this.sources,
      feed: this.feed,
      assets: loadAssets(),
      log: this.o.log,
    });
    server.keepAliveTimeout = 30_000;
    const [host, portText] = [this.o.listen.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''), /:(\d+)$/.exec(this.o.listen)![1]!];
    const portFile = join(home, 'dashboard.port');
    let port = Number(portText);
    // Port 0: the port of the last start when it is free, so preview URLs outlive a restart.
    const last = port === 0 && existsSync(portFile) ? Number(readFileSync(portFile, 'utf8').trim()) : 0;
    try {
      await listenOn(server, host, last || port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (last && code === 'EADDRINUSE') await listenOn(server, host, 0);
      else if (code === 'EADDRINUSE' && !this.o.explicit) {
        this.o.log(`berth: the dashboard's port ${port} is in use: no dashboard (set BERTH_DASHBOARD=127.0.0.1:PORT, or --dashboard)`);
        this.close();
        return;
      } else if (code === 'EADDRINUSE') {
        throw new BerthError(
          'port_in_use',
          `the dashboard's address ${this.o.listen} is in use`,
          'pick another with --dashboard 127.0.0.1:PORT',
        );
      } else throw err;
    }
    const a = server.address();
    port = typeof a === 'object' && a ? a.port : port;
    writeFileSync(portFile, String(port) + '\n');
    this.server = server;
    this.url = `http://${DASHBOARD_HOST}:${port}`;
    await this.feed.start();
    this.o.log(`berth: dashboard on ${this.url} (\`berth dashboard\` prints a login link)`);
  }

  /** POST /dashboard/login on the node API: a one-time login link, for the node's own token only. */
  private async login(req: http.IncomingMessage, res: http.ServerResponse, token: string | undefined): Promise<void> {
    const answer = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    if (req.method !== 'POST') return answer(405, { error: { code: 'invalid_request', message: 'POST only' } });
    if (!this.url || !this.sessions || !this.socketPath) {
      return answer(503, {
        error: {
          code: 'daemon_unreachable',
          message: 'this node runs no dashboard',
          hint: 'start the node with --dashboard 127.0.0.1:PORT',
        },
      });
    }
    // Scoped like the node's own token: a caller whose token may not list the node's tokens is no supervisor.
    const check = new NodeClient({ socketPath: this.socketPath, token });
    try {
      await check.tokens(AbortSignal.timeout(10_000));
    } catch (err) {
      const e = err instanceof BerthError ? err : new BerthError('internal', (err as Error).message);
      if (e.code === 'forbidden' || e.code === 'unauthorized') {
        return answer(403, {
          error: { code: 'forbidden', message: "the dashboard needs the node's own token; an agent's token cannot open it" },
        });
      }
      throw e;
    } finally {
      check.close();
    }
    const { token: login, expiresAt } = this.sessions.mintLogin();
    answer(200, { url: `${this.url}/login#${login}`, expiresAt });
  }

  close(): void {
    this.feed?.close();
    this.sources?.close();
    if (this.server) {
      this.server.emit('berth:shutdown');
      this.server.close();
      this.server.closeAllConnections();
    }
  }
}
