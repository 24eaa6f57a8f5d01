// The dashboard's HTTP server, on loopback. Four kinds of host reach it: the dashboard itself
// (berth.localhost:PORT), the bare loopback names (127.0.0.1:PORT, localhost:PORT), sent on to
// berth.localhost without a cookie, preview hosts (PORT--ENV.localhost:PORT), and anything else,
// refused (a DNS-rebinding page names a host of its own). The session cookie is host-only on
// berth.localhost: browsers send a cookie to every port of its host, so one set on 127.0.0.1
// would reach any app an environment forwards to 127.0.0.1 or localhost (`berth forward`). Every answer from the dashboard
// carries a strict Content-Security-Policy and may not be framed; every request that changes
// something, and every WebSocket, must come from the dashboard's own origin.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { asBerthError, BerthError } from '../core/errors.js';
import { act, ActionBody, diff, streamLogs } from './actions.js';
import type { Asset } from './assets.js';
import type { Feed, FeedMessage } from './feed.js';
import { previewHost, previewTarget, proxyHttp, proxyUpgrade, type PreviewTarget } from './preview.js';
import { cookies, PREVIEW_COOKIE, SESSION_COOKIE, SESSION_TTL_MS, setCookie, type Sessions } from './session.js';
import type { Sources } from './sources.js';
import { bridgeTerminal } from './terminal.js';

export interface DashboardParts {
  sessions: Sessions;
  sources: Sources;
  feed: Feed;
  assets: Map<string, Asset>;
  log: (l: string) => void;
}

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // xterm.js sizes and colours its rows with style elements of its own.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
].join('; ');

const SECURITY = {
  'content-security-policy': CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const MAX_BODY = 64 * 1024;

function json(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY, 'content-type': 'application/json', 'cache-control': 'no-store', ...extra });
  res.end(JSON.stringify(body));
}

function fail(res: http.ServerResponse, err: unknown, log: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log(`berth: dashboard: ${e.message}`);
  if (res.headersSent) return void res.end();
  json(res, e.httpStatus, { error: e.toWire() });
}

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BerthError('too_large', 'the request body is too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch {
        reject(new BerthError('invalid_request', 'the request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** The dashboard's own name: browsers send every *.localhost name to loopback. */
export const DASHBOARD_HOST = 'berth.localhost';

/** The dashboard's own host on this port. */
function ownHost(host: string | undefined, port: number): boolean {
  return host === `${DASHBOARD_HOST}:${port}`;
}

/** A bare loopback name of this port: sent on to the dashboard's own name. */
function bareHost(host: string | undefined, port: number): boolean {
  return host === `127.0.0.1:${port}` || host === `localhost:${port}` || host === `[::1]:${port}`;
}

/** The request comes from a page of this very origin (browsers always send Origin on these). */
function sameOrigin(req: http.IncomingMessage): boolean {
  return req.headers.origin === `http://${req.headers.host ?? ''}`;
}

export function createDashboardServer(p: DashboardParts): http.Server {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  const port = (): number => {
    const a = server.address();
    return typeof a === 'object' && a ? a.port : 0;
  };
  const signedIn = (req: http.IncomingMessage): boolean => p.sessions.validSession(cookies(req.headers.cookie)[SESSION_COOKIE]);

  const server = http.createServer((req, res) => {
    const host = req.headers.host;
    const preview = previewTarget(host);
    const go = preview
      ? servePreview(p, preview, req, res)
      : ownHost(host, port())
        ? serveDashboard(p, req, res, signedIn)
        : bareHost(host, port())
          ? toOwnHost(req, res, port())
          : refuseHost(res);
    go.catch((err: unknown) => fail(res, err, p.log));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const refuse = (status: number, why: string): void => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${why}\n`);
    };
    const preview = previewTarget(req.headers.host);
    if (preview) {
      if (!sameOrigin(req)) return refuse(403, 'cross-origin WebSocket refused');
      if (!p.sessions.validPreview(cookies(req.headers.cookie)[PREVIEW_COOKIE], preview.host)) return refuse(401, 'no preview session');
      void proxyUpgrade(p.sources, preview, req, socket, head);
      return;
    }
    if (!ownHost(req.headers.host, port())) return refuse(421, 'unknown host');
    if (!sameOrigin(req)) return refuse(403, 'cross-origin WebSocket refused');
    if (!signedIn(req)) return refuse(401, 'sign in to the dashboard first');
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (url.pathname !== '/ws/terminal') return refuse(404, 'no such endpoint');
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      void bridgeTerminal(p.sources, ws, url.searchParams);
    });
  });
  server.on('berth:shutdown', () => {
    for (const c of wss.clients) c.terminate();
  });
  return server;
}

/** Same path on berth.localhost; a login link's #fragment goes along (browsers keep it). */
async function toOwnHost(req: http.IncomingMessage, res: http.ServerResponse, port: number): Promise<void> {
  req.resume();
  res.writeHead(308, { ...SECURITY, location: `http://${DASHBOARD_HOST}:${port}${req.url ?? '/'}`, 'cache-control': 'no-store' });
  res.end();
}

async function refuseHost(res: http.ServerResponse): Promise<void> {
  res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('berth: this host is not the dashboard; open the URL `berth dashboard` prints\n');
}

function sendAsset(res: http.ServerResponse, a: Asset): void {
  res.writeHead(200, { ...SECURITY, 'content-type': a.type, 'cache-control': 'no-cache', 'content-length': a.body.length });
  res.end(a.body);
}

async function serveDashboard(
  p: DashboardParts,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  signedIn: (r: http.IncomingMessage) => boolean,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  // A cross-origin page may not even read through a GET (no CORS is offered, and this says why).
  if (req.headers.origin && !sameOrigin(req)) throw new BerthError('forbidden', 'cross-origin request refused');
  if (method !== 'GET' && method !== 'HEAD' && !sameOrigin(req)) throw new BerthError('forbidden', 'cross-origin request refused');
  if (path === '/favicon.ico') {
    res.writeHead(204, SECURITY);
    return void res.end();
  }
  if (method === 'GET' && (path === '/login' || path.startsWith('/static/') || path.startsWith('/vendor/'))) {
    const a = p.assets.get(path);
    if (!a) throw new BerthError('not_found', `no such file ${path}`);
    return sendAsset(res, a);
  }
  if (method === 'POST' && path === '/api/login') {
    const body = (await readBody(req)) as { token?: unknown };
    const cookie = p.sessions.exchange(body.token);
    if (!cookie)
      throw new BerthError(
        'unauthorized',
        'this login link is not valid: it was used already, or it expired',
        'run `berth dashboard` for a new one',
      );
    return json(
      res,
      200,
      { ok: true },
      { 'set-cookie': setCookie(SESSION_COOKIE, cookie, { sameSite: 'Strict', maxAgeMs: SESSION_TTL_MS }) },
    );
  }
  if (method === 'POST' && path === '/api/logout') {
    return json(res, 200, { ok: true }, { 'set-cookie': setCookie(SESSION_COOKIE, '', { sameSite: 'Strict', maxAgeMs: 0 }) });
  }
  if (!signedIn(req)) {
    if (path.startsWith('/api/'))
      throw new BerthError('unauthorized', 'sign in to the dashboard first', 'run `berth dashboard` for a login link');
    res.writeHead(302, { ...SECURITY, location: '/login', 'cache-control': 'no-store' });
    return void res.end();
  }
  if (method === 'GET' && path === '/') return sendAsset(res, p.assets.get('/')!);
  if (method === 'GET' && path === '/api/feed') return feedStream(p.feed, req, res);
  const m = /^\/(api|preview)\/envs\/([^/]+)(?:\/([a-z]+))?(?:\/([^/]+))?$/.exec(path);
  if (!m) throw new BerthError('not_found', `no such endpoint ${method} ${path}`);
  const key = decodeURIComponent(m[2]!);
  const verb = m[3] ?? '';
  if (m[1] === 'preview' && method === 'GET') {
    // /preview/envs/KEY/PORT: hand the preview host a cookie of its own, through its own origin.
    const portNo = Number(verb || m[4]);
    const target = previewHost(key, portNo);
    const dport = (req.headers.host ?? '').replace(/^.*:/, '');
    const t = p.sessions.handoff(target);
    res.writeHead(302, {
      ...SECURITY,
      location: `http://${target}:${dport}/__berth/handoff?t=${encodeURIComponent(t)}`,
      'cache-control': 'no-store',
    });
    return void res.end();
  }
  if (method === 'GET' && verb === 'diff') return json(res, 200, await diff(p.sources, key));
  if (method === 'GET' && verb === 'describe') return json(res, 200, await (await p.sources.env(key)).describe());
  if (method === 'GET' && verb === 'logs' && m[4]) return streamLogs(p.sources, key, decodeURIComponent(m[4]), req, res);
  if (method === 'POST' && verb) {
    const body = ActionBody.safeParse(await readBody(req));
    if (!body.success) throw new BerthError('invalid_request', body.error.issues[0]?.message ?? 'invalid request');
    return json(res, 200, await act(p.sources, key, verb, body.data));
  }
  throw new BerthError('not_found', `no such endpoint ${method} ${path}`);
}

function feedStream(feed: Feed, req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { ...SECURITY, 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  res.write(': berth dashboard feed\n\n');
  const send = (m: FeedMessage): void => {
    res.write(`data: ${JSON.stringify(m)}\n\n`);
  };
  const off = feed.subscribe(send);
  const ping = setInterval(() => res.write(': ping\n\n'), 25_000);
  req.on('close', () => {
    off();
    clearInterval(ping);
  });
}

async function servePreview(p: DashboardParts, t: PreviewTarget, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://preview');
  if (url.pathname === '/__berth/handoff') {
    const cookie = p.sessions.previewCookie(url.searchParams.get('t'), t.host);
    if (!cookie) throw new BerthError('unauthorized', 'this preview link expired', 'open the port again from the dashboard');
    res.writeHead(302, {
      location: '/',
      'set-cookie': setCookie(PREVIEW_COOKIE, cookie, { sameSite: 'Lax', maxAgeMs: SESSION_TTL_MS }),
      'cache-control': 'no-store',
    });
    return void res.end();
  }
  if (!p.sessions.validPreview(cookies(req.headers.cookie)[PREVIEW_COOKIE], t.host)) {
    res.writeHead(401, { ...SECURITY, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    return void res.end(
      `berth: ${t.key} port ${t.port} is shown only to a dashboard session: open it from the dashboard (\`berth dashboard\`)\n`,
    );
  }
  await proxyHttp(p.sources, t, req, res);
}
