// The node API: HTTP + WebSocket, on a unix socket (filesystem permissions guard it) and,
// when asked, on TCP with a bearer token on every endpoint.
import http from 'node:http';
import https from 'node:https';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { Transform, type Duplex, type Readable } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import {
  ApplyRequest,
  SnapshotImport,
  BatchRequest,
  CreateEnvRequest,
  ExecRequest,
  PoolRequest,
  ServiceStartRequest,
  SnapRequest,
  VerifyRequest,
  type NodeInfo,
} from '../core/api.js';
import { deleteSnapshot, gc, gcTrees, getSnapshot, listSnapshots, restore, snap, snapshotInfo } from '../env/snapshots.js';
import type { PoolKeeper } from '../env/pools.js';
import { applyPush, importSnapshot, missingBlobs } from '../env/transfer.js';
import { fetchFromEnv, FetchRequest } from '../remote/git-remote.js';
import { asBerthError, BerthError } from '../core/errors.js';
import type { EnvManager } from '../env/manager.js';
import { execBuffered, startExec } from '../env/exec-service.js';
import {
  autostartServices,
  describeEnv,
  listServices,
  openStream,
  putArchive,
  runBatch,
  startService,
  stopService,
} from '../env/env-ops.js';
import { verify } from '../env/verify.js';
import type { PtySessions } from '../env/pty-sessions.js';

const MAX_BODY = 16 * 1024 * 1024;
const MAX_BLOB = 512 * 1024 * 1024;
/** The largest tar unpacked into an environment in one request (a cache restored by enter). */
const MAX_ARCHIVE = 8 * 1024 * 1024 * 1024;
/** Output held for a slow WebSocket client before the command is paused. */
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
/** What is read and dropped of a body the route left unread, before its answer is sent. */
const DRAIN_MAX = 64 * 1024 * 1024;
const DRAIN_MS = 5_000;
/** How long a connection answered before its body ended goes on reading (and dropping) it. */
const LINGER_MS = 2_000;

export interface ServerOptions {
  manager: EnvManager;
  ptys: PtySessions;
  pools: PoolKeeper;
  nodeInfo: () => Promise<NodeInfo>;
  /** Required on TCP listeners. */
  token?: string;
  log: (line: string) => void;
}

type Reply = { status: number; body?: unknown };
type Ctx = { o: ServerOptions; req: http.IncomingMessage; res: http.ServerResponse; params: string[]; query: URLSearchParams };
type Route = { method: string; pattern: RegExp; handle: (c: Ctx) => Promise<Reply> };

const NAME = '([^/]+)';
const ROUTES: Route[] = [
  { method: 'GET', pattern: /^\/v1\/node$/, handle: async ({ o }) => ok(await o.nodeInfo()) },
  { method: 'GET', pattern: /^\/v1\/envs$/, handle: async ({ o }) => ok({ envs: o.manager.list() }) },
  {
    method: 'POST',
    pattern: /^\/v1\/envs$/,
    handle: async ({ o, req, res }) => {
      const body = parse(CreateEnvRequest, await readJson(req));
      const abort = new AbortController();
      const onClose = (): void => {
        if (!res.writableEnded) abort.abort();
      };
      res.once('close', onClose);
      try {
        const env = await o.manager.create(body, abort.signal);
        // The environment exists either way; a service that cannot start is reported, not fatal.
        const auto = await autostartServices(o.manager, env.name).then(
          (services) => (services.length ? { autostarted: services } : {}),
          (err: unknown) => ({ autostartError: asBerthError(err).oneLine() }),
        );
        return { status: 201, body: { ...env, ...auto } };
      } finally {
        res.off('close', onClose);
      }
    },
  },
  { method: 'GET', pattern: new RegExp(`^/v1/envs/${NAME}$`), handle: async ({ o, params }) => ok(o.manager.get(params[0]!)) },
  {
    method: 'DELETE',
    pattern: new RegExp(`^/v1/envs/${NAME}$`),
    handle: async ({ o, params, query }) => {
      const r = await o.manager.remove(params[0]!, {
        discard: query.get('discard') === '1',
        snapshot: (n) => snap(o.manager, n, { reason: 'removed' }),
      });
      return ok({ removed: params[0], snapshot: r.snapshot });
    },
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/pause$`),
    handle: async ({ o, params }) => ok(await o.manager.pause(params[0]!)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/resume$`),
    handle: async ({ o, params }) => ok(await o.manager.resume(params[0]!)),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/envs/${NAME}/identity$`),
    handle: async ({ o, params }) => ok(o.manager.get(params[0]!).identity),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/snapshots$`),
    handle: async ({ o, req, params }) => ({
      status: 201,
      body: await snap(o.manager, params[0]!, parse(SnapRequest, await readJson(req))),
    }),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/restore$`),
    handle: async ({ o, req, params }) =>
      ok(
        await restore(
          o.manager,
          params[0]!,
          parse(z.object({ snapshot: z.string().min(1).max(80) }).strict(), await readJson(req)).snapshot,
        ),
      ),
  },
  { method: 'GET', pattern: /^\/v1\/snapshots$/, handle: async ({ o }) => ok({ snapshots: listSnapshots(o.manager) }) },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/snapshots/${NAME}$`),
    handle: async ({ o, params }) => ok(snapshotInfo(getSnapshot(o.manager, params[0]!))),
  },
  {
    method: 'DELETE',
    pattern: new RegExp(`^/v1/snapshots/${NAME}$`),
    handle: async ({ o, params }) => {
      deleteSnapshot(o.manager, params[0]!);
      return ok({ removed: params[0] });
    },
  },
  { method: 'POST', pattern: /^\/v1\/gc$/, handle: async ({ o }) => ok({ ...gc(o.manager), treesRemoved: await gcTrees(o.manager) }) },
  {
    method: 'POST',
    pattern: /^\/v1\/blobs\/missing$/,
    handle: async ({ o, req }) =>
      ok({
        missing: missingBlobs(
          o.manager,
          parse(z.object({ hashes: z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(100_000) }).strict(), await readJson(req)).hashes,
        ),
      }),
  },
  {
    method: 'GET',
    pattern: /^\/v1\/blobs\/([0-9a-f]{64})$/,
    handle: async ({ o, params }) => ({ status: 200, body: o.manager.store.get(params[0]!) }),
  },
  {
    method: 'PUT',
    pattern: /^\/v1\/blobs\/([0-9a-f]{64})$/,
    handle: async ({ o, req, params }) => {
      const data = await readRaw(req, MAX_BLOB);
      const actual = createHash('sha256').update(data).digest('hex');
      if (actual !== params[0])
        throw new BerthError('corrupt', `the blob sent as ${params[0]!.slice(0, 12)} hashes to ${actual.slice(0, 12)}`);
      const r = o.manager.store.put(data);
      return { status: r.added ? 201 : 200, body: { hash: r.hash, added: r.added } };
    },
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/snapshots/${NAME}/manifest$`),
    handle: async ({ o, params }) => ({
      status: 200,
      body: o.manager.store.get(getSnapshot(o.manager, params[0]!).id.slice('sha256:'.length)),
    }),
  },
  {
    method: 'POST',
    pattern: /^\/v1\/snapshots\/import$/,
    handle: async ({ o, req }) => ({ status: 201, body: importSnapshot(o.manager, parse(SnapshotImport, await readJson(req))) }),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/apply$`),
    handle: async ({ o, req, params }) => {
      const body = parse(ApplyRequest, await readJson(req));
      const r = await applyPush(o.manager, params[0]!, body.since, body.snapshot);
      return {
        status: r.applied ? 200 : 409,
        body: r.applied
          ? r
          : { ...r, error: { code: 'conflict', message: `push conflicts with the agent's changes in ${r.conflicts.join(', ')}` } },
      };
    },
  },
  {
    method: 'PUT',
    pattern: new RegExp(`^/v1/envs/${NAME}/archive$`),
    handle: async ({ o, req, params, query }) => ok(await putArchive(o.manager, params[0]!, query.get('path'), capped(req, MAX_ARCHIVE))),
  },
  {
    method: 'POST',
    pattern: /^\/v1\/repos\/fetch$/,
    handle: async ({ o, req }) => ok(await fetchFromEnv(o.manager.config.cacheRoot, parse(FetchRequest, await readJson(req)))),
  },
  {
    method: 'PATCH',
    pattern: new RegExp(`^/v1/envs/${NAME}$`),
    handle: async ({ o, req, params }) => {
      const body = parse(z.object({ upstream: CreateEnvRequest.shape.upstream }).strict(), await readJson(req));
      const row = o.manager.row(params[0]!);
      o.manager.db.updateEnv(row.id, { upstream: body.upstream ? JSON.stringify(body.upstream) : null });
      return ok(o.manager.get(params[0]!));
    },
  },
  { method: 'GET', pattern: /^\/v1\/pools$/, handle: async ({ o }) => ok({ pools: o.pools.list() }) },
  { method: 'PUT', pattern: /^\/v1\/pools$/, handle: async ({ o, req }) => ok(await o.pools.set(parse(PoolRequest, await readJson(req)))) },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/envs/${NAME}/describe$`),
    handle: async ({ o, params }) => ok(await describeEnv(o.manager, params[0]!)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/exec$`),
    handle: async ({ o, req, res, params }) => {
      const body = parse(ExecRequest, await readJson(req));
      return ok(await execBuffered(o.manager, params[0]!, body, res));
    },
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/batch$`),
    handle: async ({ o, req, params }) => ok(await runBatch(o.manager, params[0]!, parse(BatchRequest, await readJson(req)))),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/envs/${NAME}/services$`),
    handle: async ({ o, params }) => ok({ services: await listServices(o.manager, params[0]!) }),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/services$`),
    handle: async ({ o, req, params }) => ({
      status: 201,
      body: await startService(o.manager, params[0]!, parse(ServiceStartRequest, await readJson(req))),
    }),
  },
  {
    method: 'DELETE',
    pattern: new RegExp(`^/v1/envs/${NAME}/services/${NAME}$`),
    handle: async ({ o, params }) => ok(await stopService(o.manager, params[0]!, params[1]!)),
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/v1/envs/${NAME}/verify$`),
    handle: async ({ o, req, params }) => ok(await verify(o.manager, params[0]!, parse(VerifyRequest, await readJson(req)))),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/v1/envs/${NAME}/pty$`),
    handle: async ({ o, params }) => ok({ sessions: o.ptys.list(o.manager.get(params[0]!).name) }),
  },
];

/** Every HTTP route, as method and path pattern: tests walk them all (auth on every one). */
export function routeTable(): Array<{ method: string; pattern: string }> {
  return ROUTES.map((r) => ({ method: r.method, pattern: r.pattern.source }));
}

export const WEBSOCKET_ROUTES = [
  '/v1/envs/x/exec/ws',
  '/v1/envs/x/pty',
  '/v1/envs/x/pty/abc/watch',
  '/v1/envs/x/logs/svc',
  '/v1/envs/x/connect/80',
];

function ok(body: unknown): Reply {
  return { status: 200, body };
}

export function createApiServer(o: ServerOptions, requireToken: boolean, tls?: { cert: Buffer; key: Buffer }): http.Server {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * 1024 * 1024 });
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    route(o, req, res, requireToken).then(
      (r) => reply(res, r),
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
      if (requireToken) authorize(req, o.token);
      const url = new URL(req.url ?? '/', 'http://berth');
      const m = /^\/v1\/envs\/([^/]+)\/(exec|pty|logs|connect)(?:\/([^/]+))?(?:\/(watch))?$/.exec(url.pathname);
      if (!m) throw new BerthError('not_found', `no such endpoint ${url.pathname}`);
      const name = decode(m[1]!);
      const kind = m[2]!;
      const sub = m[3] ? decode(m[3]) : undefined;
      o.manager.get(name); // unknown environments get a 404 before the upgrade
      wss.handleUpgrade(req, socket, head, (ws) => {
        // A malformed frame (unmasked, reserved opcode or RSV bits, bad UTF-8, a bad close frame,
        // over maxPayload): ws has already closed this connection with the code that says why
        // (1002, 1007, 1009) when it emits 'error'. Handled here, for every route, before any
        // handler runs, it ends this connection only.
        ws.on('error', () => {});
        if (kind === 'exec') execOverWebSocket(o, name, ws);
        else if (kind === 'logs' && sub) logsOverWebSocket(o, name, sub, url.searchParams, ws);
        else if (kind === 'connect' && sub) connectOverWebSocket(o, name, Number(sub), ws);
        else if (kind === 'pty' && sub && m[4]) watchPty(o, name, sub, ws);
        else if (kind === 'pty') ptyOverWebSocket(o, name, url.searchParams, ws);
        else closeWith(ws, new BerthError('not_found', `no such endpoint ${url.pathname}`));
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

function authorize(req: http.IncomingMessage, token: string | undefined): void {
  // RFC 7235: the scheme is case-insensitive, then one or more spaces, then the credentials.
  const given = /^[ \t]*bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '')?.[1];
  if (!token || !given)
    throw new BerthError('unauthorized', 'a bearer token is required', 'pass the node token (Authorization: Bearer ...)');
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new BerthError('unauthorized', 'the bearer token is wrong');
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new BerthError('invalid_request', `malformed path segment ${JSON.stringify(s)}`);
  }
}

async function route(o: ServerOptions, req: http.IncomingMessage, res: http.ServerResponse, requireToken: boolean): Promise<Reply> {
  if (requireToken) authorize(req, o.token);
  const url = new URL(req.url ?? '/', 'http://berth');
  let pathMatched = false;
  for (const r of ROUTES) {
    const m = r.pattern.exec(url.pathname);
    if (!m) continue;
    pathMatched = true;
    if (r.method !== (req.method ?? 'GET')) continue;
    return r.handle({ o, req, res, params: m.slice(1).map(decode), query: url.searchParams });
  }
  if (pathMatched) throw new BerthError('invalid_request', `${req.method} is not allowed on ${url.pathname}`);
  throw new BerthError('not_found', `no such endpoint ${req.method} ${url.pathname}`);
}

function closeWith(ws: WebSocket, err: unknown, log?: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log?.(`berth: ${e.message}`);
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ error: e.toWire() }));
  ws.close();
}

/** Pauses a source while the client's buffer is over the high-water mark. */
function flow(ws: WebSocket, pause: () => void, resume: () => void): () => void {
  let paused = false;
  let timer: NodeJS.Timeout | undefined;
  return () => {
    if (paused || ws.bufferedAmount < HIGH_WATER) return;
    paused = true;
    pause();
    timer = setInterval(() => {
      if (ws.readyState !== ws.OPEN || ws.bufferedAmount < LOW_WATER) {
        clearInterval(timer);
        paused = false;
        resume();
      }
    }, 20);
  };
}

function execOverWebSocket(o: ServerOptions, name: string, ws: WebSocket): void {
  let run: Awaited<ReturnType<typeof startExec>> | undefined;
  let closed = false;
  const early: Buffer[] = [];
  const onBinary = (data: Buffer): void => {
    if (!run) return void early.push(data);
    const kind = data[0];
    if (kind === 0 && !run.writeStdin(data.subarray(1))) {
      // Stdin flow control: read no more from the client until the agent takes this.
      ws.pause();
      run.onDrain(() => ws.resume());
    } else if (kind === 1) run.endStdin();
    else if (kind === 2) run.signal(data.subarray(1).toString('utf8'));
  };
  ws.on('close', () => {
    closed = true;
    run?.signal('SIGHUP');
  });
  ws.once('message', (first, isBinary) => {
    if (isBinary) return closeWith(ws, new BerthError('invalid_request', 'the first message must be the JSON exec request'));
    let req: ExecRequest & { interactiveStdin?: boolean };
    try {
      const raw: unknown = JSON.parse(String(first));
      if (!raw || typeof raw !== 'object' || Array.isArray(raw))
        throw new BerthError('invalid_request', 'exec request is not a JSON object');
      const { interactiveStdin, ...rest } = raw as Record<string, unknown>;
      req = { ...parse(ExecRequest, rest), interactiveStdin: interactiveStdin === true };
    } catch (err) {
      return closeWith(ws, err instanceof SyntaxError ? new BerthError('invalid_request', 'exec request is not JSON') : err);
    }
    ws.on('message', (data, bin) => {
      if (bin) onBinary(data as Buffer);
    });
    let check = (): void => {};
    startExec(o.manager, name, req, {
      stdout: (c) => {
        ws.send(Buffer.concat([Buffer.of(1), c]));
        check();
      },
      stderr: (c) => {
        ws.send(Buffer.concat([Buffer.of(2), c]));
        check();
      },
    }).then(
      (r) => {
        run = r;
        check = flow(
          ws,
          () => r.pause(),
          () => r.resume(),
        );
        if (closed) return r.signal('SIGHUP');
        for (const d of early.splice(0)) onBinary(d);
        r.result.then(
          (result) => {
            if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ exit: result }));
            ws.close();
          },
          (err: unknown) => closeWith(ws, err, o.log),
        );
      },
      (err: unknown) => closeWith(ws, err, o.log),
    );
  });
}

function ptyOverWebSocket(o: ServerOptions, name: string, q: URLSearchParams, ws: WebSocket): void {
  const cols = Number(q.get('cols') ?? 80);
  const rows = Number(q.get('rows') ?? 24);
  const argv = q.getAll('argv');
  let stream: Awaited<ReturnType<PtySessions['open']>>['stream'] | undefined;
  let check = (): void => {};
  const pending: Array<Buffer | string> = [];
  const handleMessage = (data: Buffer | string, isBinary: boolean): void => {
    if (!stream) return void pending.push(isBinary ? data : String(data));
    o.manager.touch(name);
    if (isBinary) stream.writeStdin(data as Buffer);
    else {
      try {
        const msg = JSON.parse(String(data)) as { resize?: [number, number]; signal?: string };
        if (msg.resize) stream.control({ resize: msg.resize });
        if (msg.signal) stream.signal(msg.signal);
      } catch {
        /* ignore */
      }
    }
  };
  ws.on('message', (d, bin) => handleMessage(d as Buffer, bin));
  ws.on('close', () => stream?.endStdin());
  o.ptys
    .open(
      name,
      { argv, cols, rows },
      {
        output: (c) => {
          if (ws.readyState !== ws.OPEN) return;
          ws.send(c);
          check();
        },
        exit: (code, signal) => exitAndClose(ws, code, signal),
      },
    )
    .then(
      (s) => {
        stream = s.stream;
        // The owner's terminal holds the session back when it cannot keep up.
        check = flow(
          ws,
          () => s.stream.control({ pause: true }),
          () => s.stream.control({ resume: true }),
        );
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ session: s.id }));
        else s.stream.endStdin();
        for (const p of pending.splice(0)) handleMessage(p, typeof p !== 'string');
      },
      (err: unknown) => closeWith(ws, err, o.log),
    );
}

/** A TCP stream to a port inside the environment, as WebSocket binary messages. */
function connectOverWebSocket(o: ServerOptions, name: string, port: number, ws: WebSocket): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return closeWith(ws, new BerthError('invalid_request', 'port must be 1-65535'));
  let check = (): void => {};
  const pending: Buffer[] = [];
  let stream: Awaited<ReturnType<typeof openStream>> | undefined;
  ws.on('message', (d, bin) => {
    if (!bin) return;
    if (stream) stream.writeStdin(d as Buffer);
    else pending.push(d as Buffer);
  });
  openStream(
    o.manager,
    name,
    { op: 'connect', port },
    {
      onStdout: (c) => {
        if (ws.readyState === ws.OPEN) ws.send(c);
        check();
      },
      onOpened: () => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ open: true }));
      },
    },
  ).then(
    (s) => {
      stream = s;
      for (const c of pending.splice(0)) s.writeStdin(c);
      check = flow(
        ws,
        () => s.control({ pause: true }),
        () => s.control({ resume: true }),
      );
      ws.on('close', () => s.endStdin());
      s.done.then(
        (r) =>
          r.ok
            ? ws.close()
            : closeWith(ws, new BerthError(r.error?.code === 'not_found' ? 'not_found' : 'internal', r.error?.message ?? 'connect failed')),
        (err: unknown) => closeWith(ws, err, o.log),
      );
    },
    (err: unknown) => closeWith(ws, err, o.log),
  );
}

function exitAndClose(ws: WebSocket, code: number, signal: string | null): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ exit: { exitCode: code, signal } }));
  ws.close();
}

function watchPty(o: ServerOptions, name: string, id: string, ws: WebSocket): void {
  try {
    const stop = o.ptys.watch(name, id, {
      // A watcher that cannot keep up misses output; it never slows the session down.
      output: (c) => ws.readyState === ws.OPEN && ws.bufferedAmount < HIGH_WATER && ws.send(c),
      exit: (code, signal) => exitAndClose(ws, code, signal),
    });
    ws.send(JSON.stringify({ session: id, readOnly: true }));
    ws.on('close', stop);
    // Watchers are read-only: whatever they send is dropped.
  } catch (err) {
    closeWith(ws, err);
  }
}

function logsOverWebSocket(o: ServerOptions, name: string, service: string, q: URLSearchParams, ws: WebSocket): void {
  const follow = q.get('follow') === '1';
  const tail = Number(q.get('tail') ?? 64 * 1024);
  let check = (): void => {};
  openStream(
    o.manager,
    name,
    { op: 'logs', name: service, follow, tailBytes: Number.isFinite(tail) ? tail : undefined },
    {
      onStdout: (c) => {
        if (ws.readyState === ws.OPEN) ws.send(c);
        check();
      },
    },
  ).then(
    (s) => {
      check = flow(
        ws,
        () => s.control({ pause: true }),
        () => s.control({ resume: true }),
      );
      ws.on('close', () => s.endStdin());
      s.done.then(
        (r) => {
          if (!r.ok)
            return closeWith(
              ws,
              new BerthError(r.error?.code === 'not_found' ? 'not_found' : 'internal', r.error?.message ?? 'logs failed'),
            );
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ end: true }));
          ws.close();
        },
        (err: unknown) => closeWith(ws, err, o.log),
      );
    },
    (err: unknown) => closeWith(ws, err, o.log),
  );
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

/** The request body as a stream that fails with too_large past `max` bytes. */
function capped(req: http.IncomingMessage, max: number): Readable {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > max) throw new BerthError('too_large', `upload of ${declared} bytes is over ${max} bytes`);
  let size = 0;
  const counter = new Transform({
    transform(c: Buffer, _enc, cb) {
      size += c.length;
      if (size > max) cb(new BerthError('too_large', `upload is over ${max} bytes`));
      else cb(null, c);
    },
  });
  req.on('error', () => counter.destroy(new BerthError('invalid_request', 'the upload was cut short')));
  // The engine upload that reads this stream hears its errors; a request refused before its
  // upload began has no reader, and an 'error' no one hears would end the daemon.
  counter.on('error', () => {});
  return req.pipe(counter);
}

function readRaw(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BerthError('too_large', `upload is over ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Answers a request. A route that answers before the request's body has all come (it did not
 * need it, refused it, or stopped reading at a limit) first reads and drops what is left, up to
 * a cap: a client still writing its body when the connection closes may get a reset instead of
 * the answer.
 */
function reply(res: http.ServerResponse, r: Reply): void {
  const req = res.req as http.IncomingMessage | undefined;
  if (!req || req.complete) return send(res, r);
  void drain(req).then(() => send(res, r));
}

function replyError(res: http.ServerResponse, err: unknown, log: (l: string) => void): void {
  const e = asBerthError(err);
  if (e.code === 'internal') log(`berth: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (res.headersSent) return void res.destroy();
  reply(res, { status: e.httpStatus, body: { error: e.toWire() } });
}

/** Reads and drops the rest of a request's body: until it ends, or past DRAIN_MAX bytes or DRAIN_MS. */
function drain(req: http.IncomingMessage): Promise<void> {
  if (Number(req.headers['content-length'] ?? NaN) > DRAIN_MAX) return Promise.resolve();
  return new Promise((resolve) => {
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', done).off('close', done).off('error', done);
      resolve();
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > DRAIN_MAX) done();
    };
    const timer = setTimeout(done, DRAIN_MS);
    // A refused upload may still be piped into a stream no one reads: take the body back.
    req.unpipe();
    req.on('data', onData).on('end', done).on('close', done).on('error', done);
    req.resume();
  });
}

function send(res: http.ServerResponse, r: Reply): void {
  if (res.writableEnded || res.destroyed) return;
  // Answered before the request's body was read (refused, or over its limit): the connection
  // closes after the answer, so a keep-alive client cannot send its next request into the
  // remains of this one's body.
  if (res.req && !res.req.complete) {
    res.setHeader('connection', 'close');
    lingerOnClose(res.socket);
  }
  if (Buffer.isBuffer(r.body)) {
    res.writeHead(r.status, { 'content-type': 'application/octet-stream', 'content-length': r.body.length });
    res.end(r.body);
    return;
  }
  const body = r.body === undefined ? '' : JSON.stringify(r.body);
  res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Node ends an answered `connection: close` exchange with socket.destroySoon(): the socket is
 * closed as soon as the answer is written, and bytes of the body still arriving then make the
 * kernel reset the connection, which can cost the client the answer it has not read yet. This
 * socket instead shuts its side and goes on reading (the parser drops the body) until the client
 * closes, or LINGER_MS.
 */
function lingerOnClose(socket: Socket | null): void {
  if (!socket) return;
  socket.destroySoon = () => {
    socket.end();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('end', () => socket.destroy());
  };
}
