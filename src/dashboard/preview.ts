// Preview URLs: http://PORT--ENV.localhost:DPORT/ (and PORT--ENV.NODE.localhost for another
// node) proxied, HTTP and WebSocket, to a port inside the environment through the node's
// `connect` tunnel. Browsers send every *.localhost name to loopback, so no DNS is needed.
import http from 'node:http';
import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { BerthError } from '../core/errors.js';
import type { Sources } from './sources.js';

export interface PreviewTarget {
  /** The host name without the port: what the preview cookie is bound to. */
  host: string;
  key: string;
  port: number;
}

const HOST_RE = /^(\d{1,5})--([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.([a-z0-9](?:[a-z0-9-]*[a-z0-9])?))?\.localhost$/;

/** The environment and port a preview host names, or null when it is no preview host. */
export function previewTarget(hostHeader: string | undefined): PreviewTarget | null {
  const host = (hostHeader ?? '').toLowerCase().replace(/:\d+$/, '');
  const m = HOST_RE.exec(host);
  if (!m) return null;
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return null;
  return { host, key: m[3] ? `${m[3]}/${m[2]!}` : m[2]!, port };
}

/** The preview host for an environment's port. */
export function previewHost(key: string, port: number): string {
  const slash = key.indexOf('/');
  const host = slash < 0 ? `${port}--${key}.localhost` : `${port}--${key.slice(slash + 1)}.${key.slice(0, slash)}.localhost`;
  // Only a host that names this environment and port back: never a redirect somewhere else.
  const back = Number.isInteger(port) ? previewTarget(host) : null;
  if (!back || back.key !== key || back.port !== port) {
    throw new BerthError(
      'invalid_request',
      `no preview for ${JSON.stringify(key)} port ${String(port)}`,
      'name an environment and a port from 1 to 65535',
    );
  }
  return host;
}

/** A byte stream to a port inside an environment, open once the node says the port answered. */
function tunnel(sources: Sources, key: string, port: number): Promise<Duplex> {
  const { source, name } = sources.resolve(key);
  const ws: WebSocket = source.client.connect(name, port);
  return new Promise<Duplex>((resolve, reject) => {
    let opened = false;
    const d = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        if (ws.readyState === ws.OPEN) ws.send(chunk, cb);
        else cb(new Error('the tunnel closed'));
      },
      final(cb) {
        ws.close();
        cb();
      },
      read() {
        ws.resume();
      },
      destroy(err, cb) {
        ws.terminate();
        cb(err);
      },
    });
    ws.on('message', (data, bin) => {
      if (bin) {
        if (!d.push(data)) ws.pause();
        return;
      }
      let msg: { open?: boolean; error?: unknown };
      try {
        msg = JSON.parse(String(data)) as typeof msg;
      } catch {
        return;
      }
      if (msg.open && !opened) {
        opened = true;
        resolve(d);
      } else if (msg.error) {
        const e = BerthError.fromWire(msg.error);
        if (!opened) reject(e);
        else d.destroy(e);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      reject(
        new BerthError(res.statusCode === 404 ? 'not_found' : 'internal', `the node refused the tunnel (HTTP ${res.statusCode ?? '?'})`),
      );
    });
    ws.on('error', (err) => (opened ? d.destroy(err) : reject(err)));
    ws.on('close', () => {
      if (!opened) reject(new BerthError('not_running', `nothing answered on port ${port}`));
      else d.push(null);
    });
  });
}

function failPage(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text + '\n');
}

/** One HTTP request to the environment's port, over a tunnel of its own. */
export async function proxyHttp(sources: Sources, t: PreviewTarget, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let conn: Duplex;
  try {
    conn = await tunnel(sources, t.key, t.port);
  } catch (err) {
    const e = err instanceof BerthError ? err : new BerthError('internal', (err as Error).message);
    return failPage(
      res,
      e.code === 'not_found' ? 404 : 502,
      `berth: ${t.key} port ${t.port}: ${e.code === 'not_found' ? `no environment ${t.key} on this node` : e.message}`,
    );
  }
  const headers = { ...req.headers, host: `localhost:${t.port}`, connection: 'close' };
  delete headers.cookie; // the dashboard's cookies are not the app's
  const up = http.request({ method: req.method, path: req.url, headers, createConnection: () => conn }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.statusMessage, r.headers);
    r.pipe(res);
  });
  up.on('error', (err) => failPage(res, 502, `berth: ${t.key} port ${t.port}: ${err.message}`));
  res.on('close', () => conn.destroy());
  req.pipe(up);
}

/** A WebSocket (or any upgrade) to the environment's port: the request passed on, then bytes both ways. */
export async function proxyUpgrade(
  sources: Sources,
  t: PreviewTarget,
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  let conn: Duplex;
  try {
    conn = await tunnel(sources, t.key, t.port);
  } catch (err) {
    socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${(err as Error).message}\n`);
    return;
  }
  const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i]!;
    if (/^(host|cookie)$/i.test(k)) continue;
    lines.push(`${k}: ${req.rawHeaders[i + 1]!}`);
  }
  lines.push(`Host: localhost:${t.port}`);
  conn.write(lines.join('\r\n') + '\r\n\r\n');
  if (head.length) conn.write(head);
  socket.pipe(conn).pipe(socket);
  socket.on('error', () => conn.destroy());
  conn.on('error', () => socket.destroy());
  socket.on('close', () => conn.destroy());
  conn.on('close', () => socket.destroy());
}
