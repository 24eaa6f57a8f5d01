// The node API: HTTP + WebSocket, on a unix socket (filesystem permissions guard it) and,
// when asked, on TCP with a bearer token.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { CreateEnvRequest, ExecRequest, type NodeInfo } from '../core/api.js';
import { asBerthError, BerthError } from '../core/errors.js';
import type { EnvManager } from '../env/manager.js';
import { execBuffered, startExec } from './exec-service.js';

const MAX_BODY = 16 * 1024 * 1024;

export interface ServerOptions {
  manager: EnvManager;
  nodeInfo: () => Promise<NodeInfo>;
  /** Required on TCP listeners. */
  token?: string;
  log: (line: string) => void;
}

type Reply = { status: number; body?: unknown };

export function createApiServer(o: ServerOptions, requireToken: boolean): http.Server {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * 1024 * 1024 });
  const server = http.createServer((req, res) => {
    handle(o, req, requireToken).then(
      (r) => send(res, r),
      (err: unknown) => sendError(res, err, o.log),
    );
  });
  server.keepAliveTimeout = 60_000;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      if (requireToken) authorize(req, o.token);
      const m = /^\/v1\/envs\/([^/?]+)\/exec\/ws(?:\?.*)?$/.exec(req.url ?? '');
      if (!m) throw new BerthError('not_found', `no such endpoint ${req.url}`);
      const name = decodeURIComponent(m[1]!);
      wss.handleUpgrade(req, socket, head, (ws) => execOverWebSocket(o, name, ws));
    } catch (err) {
      const e = asBerthError(err);
      socket.end(
        `HTTP/1.1 ${e.httpStatus} ${http.STATUS_CODES[e.httpStatus]}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: e.toWire() })}`,
      );
    }
  });
  return server;
}

function authorize(req: http.IncomingMessage, token: string | undefined): void {
  const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token || !given)
    throw new BerthError('unauthorized', 'a bearer token is required', 'pass the node token (Authorization: Bearer ...)');
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new BerthError('unauthorized', 'the bearer token is wrong');
}

async function handle(o: ServerOptions, req: http.IncomingMessage, requireToken: boolean): Promise<Reply> {
  if (requireToken) authorize(req, o.token);
  const url = new URL(req.url ?? '/', 'http://berth');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const method = req.method ?? 'GET';
  if (parts[0] !== 'v1') throw new BerthError('not_found', `no such endpoint ${url.pathname}`);
  const [, resource, name, action] = parts;

  if (resource === 'node' && !name && method === 'GET') return { status: 200, body: await o.nodeInfo() };
  if (resource === 'envs') {
    if (!name) {
      if (method === 'GET') return { status: 200, body: { envs: o.manager.list() } };
      if (method === 'POST') {
        const body = parse(CreateEnvRequest, await readJson(req));
        const abort = new AbortController();
        req.socket.once('close', () => abort.abort());
        return { status: 201, body: await o.manager.create(body, abort.signal) };
      }
    } else if (!action) {
      if (method === 'GET') return { status: 200, body: o.manager.get(name) };
      if (method === 'DELETE') {
        await o.manager.remove(name);
        return { status: 200, body: { removed: name } };
      }
    } else if (action === 'exec' && method === 'POST' && parts.length === 4) {
      const body = parse(ExecRequest, await readJson(req));
      return { status: 200, body: await execBuffered(o.manager, name, body) };
    }
  }
  throw new BerthError('not_found', `no such endpoint ${method} ${url.pathname}`);
}

function execOverWebSocket(o: ServerOptions, name: string, ws: WebSocket): void {
  let run: Awaited<ReturnType<typeof startExec>> | undefined;
  const early: Buffer[] = [];
  const fail = (err: unknown): void => {
    const e = asBerthError(err);
    if (e.code === 'internal') o.log(`berth: exec ${name}: ${e.message}`);
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ error: e.toWire() }));
    ws.close();
  };
  const onBinary = (data: Buffer): void => {
    if (!run) return void early.push(data);
    const kind = data[0];
    if (kind === 0) run.writeStdin(data.subarray(1));
    else if (kind === 1) run.endStdin();
    else if (kind === 2) run.signal(data.subarray(1).toString('utf8'));
  };
  ws.once('message', (first, isBinary) => {
    if (isBinary) return fail(new BerthError('invalid_request', 'the first message must be the JSON exec request'));
    let req: ExecRequest & { interactiveStdin?: boolean };
    try {
      const raw = JSON.parse(String(first)) as Record<string, unknown>;
      const interactiveStdin = raw.interactiveStdin === true;
      delete raw.interactiveStdin;
      req = { ...parse(ExecRequest, raw), interactiveStdin };
    } catch (err) {
      return fail(err instanceof SyntaxError ? new BerthError('invalid_request', 'exec request is not JSON') : err);
    }
    ws.on('message', (data, bin) => {
      if (bin) onBinary(data as Buffer);
    });
    startExec(o.manager, name, req, {
      stdout: (c) => ws.send(Buffer.concat([Buffer.of(1), c])),
      stderr: (c) => ws.send(Buffer.concat([Buffer.of(2), c])),
    }).then((r) => {
      run = r;
      for (const d of early.splice(0)) onBinary(d);
      ws.on('close', () => r.signal('SIGHUP'));
      r.result.then((result) => {
        ws.send(JSON.stringify({ exit: result }));
        ws.close();
      }, fail);
    }, fail);
  });
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  throw new BerthError('invalid_request', `invalid request: ${where}${issue?.message ?? 'malformed'}`);
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        // Answer 413 and drop the rest unread, so the client sees the status, not a reset.
        req.removeAllListeners('data');
        req.removeAllListeners('end');
        req.resume();
        reject(new BerthError('too_large', `request body is over ${MAX_BODY} bytes`, 'send less than 16 MiB'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch {
        reject(new BerthError('invalid_request', 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, r: Reply): void {
  const body = r.body === undefined ? '' : JSON.stringify(r.body);
  res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: http.ServerResponse, err: unknown, log: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log(`berth: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (res.headersSent) return void res.destroy();
  send(res, { status: e.httpStatus, body: { error: e.toWire() } });
}
