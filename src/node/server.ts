// The node API: HTTP + WebSocket, on a unix socket (filesystem permissions guard it) and,
// when asked, on TCP with a bearer token on every endpoint. Routes, their schemas and who may
// call them are the contract's (src/core/contract.ts); this file matches a request to its
// route, checks the caller's reach, parses the body, and answers.
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { z } from 'zod';
import { compileRoutes, type CompiledRoute, PARAMS, type RouteId } from '../core/contract.js';
import { asBerthError, BerthError } from '../core/errors.js';
import type { Principal } from '../core/tokens.js';
import { streamEvents } from './events-stream.js';
import { Answer, HANDLERS, type HandlerCtx, type NodeParts } from './handlers.js';
import { parse, readJson, reply, replyError, type Reply } from './http-io.js';
import { answerWithProgress } from './progress-answer.js';
import { checkAccess } from './scope.js';
import { takenOverError } from '../core/supervision.js';
import { leaseOf } from '../env/supervision.js';
import { bearerToken } from './tokens.js';
import { closeWith, connectOverWebSocket, execOverWebSocket, logsOverWebSocket, ptyOverWebSocket, watchPty } from './ws-routes.js';

/** A request handled outside the contract's routes (the MCP endpoint), given the caller's token. */
export type ExtraHandler = (req: http.IncomingMessage, res: http.ServerResponse, token: string | undefined) => Promise<void>;

export interface ServerOptions extends NodeParts {
  /** Paths served by handlers of their own, after the caller is authenticated: `/mcp`. */
  extra?: Record<string, ExtraHandler>;
}

const COMPILED = compileRoutes();
const HTTP_ROUTES = COMPILED.filter((r) => r.spec.kind !== 'websocket');
const WS_ROUTES = COMPILED.filter((r) => r.spec.kind === 'websocket');

/** Every HTTP route, as method and path pattern: tests walk them all (auth on every one). */
export function routeTable(): Array<{ method: string; pattern: string; id: RouteId; kind: string }> {
  return HTTP_ROUTES.map((r) => ({ method: r.spec.method, pattern: r.pattern.source, id: r.id, kind: r.spec.kind }));
}

/** A path for every WebSocket route (with placeholder parameters). */
export const WEBSOCKET_ROUTES = WS_ROUTES.map((r) =>
  r.spec.path.replace(/\{(\w+)\}/g, (_, p: string) => (p === 'name' ? 'x' : p === 'port' ? '80' : p === 'session' ? 'abc' : 'svc')),
);

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new BerthError('invalid_request', `malformed path segment ${JSON.stringify(s)}`);
  }
}

/** The route a method and path name, with its parameters decoded and checked. */
function match(routes: CompiledRoute[], method: string, pathname: string): { route: CompiledRoute; params: Record<string, string> } {
  let pathMatched = false;
  for (const route of routes) {
    const m = route.pattern.exec(pathname);
    if (!m) continue;
    pathMatched = true;
    if (route.spec.method !== method) continue;
    const params: Record<string, string> = {};
    route.params.forEach((p, i) => {
      const value = decode(m[i + 1]!);
      if (value.includes('\0')) throw new BerthError('invalid_request', `the ${p} in the path holds a NUL byte`);
      const ok = PARAMS[p].safeParse(value);
      if (!ok.success) {
        throw p === 'hash' || p === 'port'
          ? new BerthError('not_found', `no such endpoint ${method} ${pathname}`)
          : new BerthError('invalid_request', `invalid ${p} in the path: ${ok.error.issues[0]?.message ?? ''}`);
      }
      params[p] = value;
    });
    return { route, params };
  }
  if (pathMatched) throw new BerthError('invalid_request', `${method} is not allowed on ${pathname}`);
  throw new BerthError('not_found', `no such endpoint ${method} ${pathname}`);
}

/**
 * @param trusted the unix socket: a caller presenting no token is the node (the socket's file
 *   mode decides who may connect). On TCP every caller presents a token.
 */
export function createApiServer(o: ServerOptions, trusted: boolean, tls?: { cert: Buffer; key: Buffer }): http.Server {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * 1024 * 1024 });
  const who = (req: http.IncomingMessage): Principal => o.tokens.authenticate(req.headers.authorization, trusted);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    route(o, who, req, res).then(
      (r) => r && reply(res, r),
      (err: unknown) => replyError(res, err, o.log),
    );
  };
  const server: http.Server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.on('berth:shutdown', () => {
    for (const c of wss.clients) c.terminate();
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands an upgrade's socket over with no 'error' listener: a peer that resets it (before,
    // during or after the handshake) ends that connection, never the node.
    socket.on('error', () => socket.destroy());
    try {
      const principal = who(req);
      const url = new URL(req.url ?? '/', 'http://berth');
      const { route: r, params } = match(WS_ROUTES, req.method ?? 'GET', url.pathname);
      // Unknown environments (and other agents' ones) get a 404 before the upgrade.
      checkAccess(principal, r.spec.access, o.manager.db, params.name, r.id);
      const name = params.name!;
      o.manager.get(name);
      wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        // A malformed frame (unmasked, reserved opcode or RSV bits, bad UTF-8, a bad close frame,
        // over maxPayload): ws has already closed this connection with the code that says why
        // (1002, 1007, 1009) when it emits 'error'. Handled here, for every route, before any
        // handler runs, it ends this connection only.
        ws.on('error', () => {});
        if (principal.kind === 'agent' && r.spec.access === 'env-write') endOnExclusiveTakeover(o, name, ws);
        switch (r.id) {
          case 'execStream':
            return execOverWebSocket(o, name, ws);
          case 'logs':
            return logsOverWebSocket(o, name, params.service!, url.searchParams, ws);
          case 'connect':
            return connectOverWebSocket(o, name, Number(params.port), ws);
          case 'watchPty':
            return watchPty(o, name, params.session!, ws);
          case 'pty':
            return ptyOverWebSocket(o, name, url.searchParams, ws);
          default:
            return closeWith(ws, new BerthError('not_found', `no such endpoint ${url.pathname}`));
        }
      });
    } catch (err) {
      const e = asBerthError(err);
      socket.end(
        `HTTP/1.1 ${e.httpStatus} ${http.STATUS_CODES[e.httpStatus]}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: e.toWire() })}`,
      );
    }
  });
  return server;
}

/**
 * An agent's stream that changes the environment (a command, a terminal, a TCP connection) ends
 * when a human takes the environment over exclusively: from then on the agent waits, as its new
 * calls do (`taken_over`).
 */
function endOnExclusiveTakeover(o: ServerOptions, name: string, ws: WebSocket): void {
  const stop = o.manager.events.subscribe((e) => {
    if (e.type !== 'env.takeover' || e.env !== name || !e.exclusive) return;
    stop();
    const row = o.manager.db.envByName(name);
    const lease = (row && leaseOf(row)) ?? { holder: e.holder, since: e.at, note: e.note, exclusive: true };
    closeWith(ws, takenOverError(name, lease));
  });
  ws.once('close', stop);
}

/** Aborts, with `taken_over`, when a human takes `name` over exclusively. */
function takeoverSignal(o: ServerOptions, name: string): { signal: AbortSignal; stop: () => void } {
  const ac = new AbortController();
  const stop = o.manager.events.subscribe((e) => {
    if (e.type !== 'env.takeover' || e.env !== name || !e.exclusive) return;
    stop();
    const row = o.manager.db.envByName(name);
    const lease = (row && leaseOf(row)) ?? { holder: e.holder, since: e.at, note: e.note, exclusive: true };
    ac.abort(takenOverError(name, lease));
  });
  return { signal: ac.signal, stop };
}

/** Answers one request; undefined when the answer is a stream that the route writes itself. */
async function route(
  o: ServerOptions,
  who: (req: http.IncomingMessage) => Principal,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<Reply | undefined> {
  const principal = who(req);
  const url = new URL(req.url ?? '/', 'http://berth');
  const extra = o.extra?.[url.pathname];
  if (extra) {
    await extra(req, res, bearerToken(req.headers.authorization));
    return undefined;
  }
  const method = req.method ?? 'GET';
  const { route: r, params } = match(HTTP_ROUTES, method, url.pathname);
  checkAccess(principal, r.spec.access, o.manager.db, params.name, r.id);
  // The query is part of the contract too: a malformed one is a 400, never a guess.
  if (r.spec.query) parse(r.spec.query, Object.fromEntries(url.searchParams));
  if (r.spec.kind === 'events') {
    streamEvents(o.manager.events, principal, req, res, url.searchParams);
    return undefined;
  }
  const handle: ((c: HandlerCtx<RouteId>) => Promise<unknown>) | undefined = HANDLERS[r.id];
  if (!handle) throw new BerthError('internal', `route ${r.id} has no handler`);
  const schema: z.ZodType | undefined = r.spec.request;
  const jsonBody = r.spec.kind === 'json' || r.spec.kind === 'progress';
  const body: unknown = jsonBody && schema ? parse(schema, await readJson(req)) : undefined;
  // An agent's call that changes the environment ends when a human takes it over exclusively.
  const taken = principal.kind === 'agent' && r.spec.access === 'env-write' && params.name ? takeoverSignal(o, params.name) : null;
  const ctx = {
    parts: o,
    principal,
    req,
    res,
    params,
    query: url.searchParams,
    body: body as never,
    progress: () => {},
    takenOver: taken?.signal,
  };
  try {
    return await answer(r.spec, handle, ctx, res, o);
  } finally {
    taken?.stop();
  }
}

async function answer(
  spec: { kind: string; status?: number },
  handle: (c: HandlerCtx<RouteId>) => Promise<unknown>,
  ctx: HandlerCtx<RouteId>,
  res: http.ServerResponse,
  o: ServerOptions,
): Promise<Reply | undefined> {
  if (spec.kind === 'progress') {
    await answerWithProgress(res, o.log, (progress) => handle({ ...ctx, progress }));
    return undefined;
  }
  const out = await handle(ctx);
  if (out instanceof Answer) return { status: out.status, body: out.body };
  return { status: spec.status ?? 200, body: out };
}
