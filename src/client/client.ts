// The one client of the node API. The CLI, the SDK and (later) the dashboard use it.
import type http from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WebSocket } from 'ws';
import type {
  BatchRequest,
  BatchResult,
  CreatedEnv,
  CreateEnvRequest,
  DescribeResult,
  EgressReport,
  EgressSummary,
  EnvInfo,
  EnvStats,
  ExecRequest,
  ExecResult,
  GcResult,
  IdentityInfo,
  NodeInfo,
  ApplyResult,
  PoolInfo,
  PoolRequest,
  SnapshotImport,
  SnapRequest,
  SnapshotInfo,
  ServiceInfo,
  ServiceStartRequest,
  VerifyRequest,
  VerifyResult,
} from '../core/api.js';
import type { RequestOf, ResponseOf, RouteId } from '../core/contract.js';
import { BerthError, typedError } from '../core/errors.js';
import type { BerthEvent } from '../core/events.js';
import { fillPath } from '../core/route-path.js';
import type { Shape } from '../core/shape.js';
import type { HandbackRequest, StatusRequest, TakeoverRequest } from '../core/supervision.js';
import type { TokenCreateRequest, TokenCreated, TokenInfo } from '../core/tokens.js';
import type { ProgressLine, ProgressReport } from '../core/toolchain-api.js';
import type { SecretInfo, SecretSetRequest } from '../core/secrets.js';
import type { ExecEnd } from '../core/ws-codec.js';
import { EXEC_TAG, FLOW, tagged, untag } from '../core/ws-tags.js';
import { Http1Error, Http1Pool, type Http1Answer } from './http1.js';
import { checked, contractShapes } from './shapes.js';

/** The arguments of one call: path parameters, query, body, and a signal. */
export interface CallArgs<K extends RouteId> {
  params?: Record<string, string | number>;
  query?: Record<string, string | undefined>;
  body?: RequestOf<K>;
  signal?: AbortSignal;
}

// `ws` (with tls, zlib and crypto under it) and `https` cost more to load than most commands
// take to run: they are loaded, synchronously, the first time a client needs them.
const requireLazily = createRequire(import.meta.url);
let wsClass: typeof WebSocket | undefined;
/** WebSocket.readyState values (RFC 6455 states, as the ws module numbers them). */
const WS_CONNECTING = 0;
const WS_OPEN = 1;
function WebSocketClass(): typeof WebSocket {
  return (wsClass ??= (requireLazily('ws') as { WebSocket: typeof WebSocket }).WebSocket);
}
function httpModule(tls: boolean): typeof http | typeof https {
  return requireLazily(tls ? 'node:https' : 'node:http') as typeof http | typeof https;
}

/** How long an event stream that dropped keeps trying to reach its node again. */
const RECONNECT_FOR_MS = 60_000;

export interface ClientOptions {
  /** Unix socket of a local node. */
  socketPath?: string;
  /** http://host:port (or https://) of a remote node, with its token. */
  url?: string;
  token?: string;
  /** PEM certificate(s) to trust for an https node. */
  ca?: string | Buffer;
  timeoutMs?: number;
}

export interface ExecStreamResult {
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
  timing: ExecResult['timing'];
}

export interface ExecHandle {
  writeStdin(chunk: Buffer): void;
  /**
   * Writes stdin read from `source`, and reads no faster than the environment takes it: past
   * 8 MiB on its way, the source is paused until less than 1 MiB is (or the command ends).
   */
  feed(chunk: Buffer, source: { pause(): unknown; resume(): unknown }): void;
  /** Bytes of stdin sent but not yet taken by the node (for flow control). */
  buffered(): number;
  /** Stop and restart reading the command's output (the node then holds the command back). */
  pauseOutput(): void;
  resumeOutput(): void;
  endStdin(): void;
  kill(signal?: string): void;
  wait(): Promise<ExecStreamResult>;
}

export class NodeClient {
  private readonly tls: boolean;
  private lazyAgent: http.Agent | undefined;
  /** JSON calls without TLS; node:http(s) carries the rest, loaded when first needed. */
  private readonly pool: Http1Pool | undefined;

  constructor(private readonly o: ClientOptions) {
    if (!o.socketPath && !o.url) throw typedError('usage', 'a node client needs a socket path or a URL');
    this.tls = o.url?.startsWith('https:') ?? false;
    if (!this.tls) {
      const base = o.url ? new URL(o.url) : undefined;
      this.pool = new Http1Pool(base ? { host: base.hostname, port: Number(base.port || 80) } : { socketPath: o.socketPath });
    }
  }

  private get mod(): typeof http | typeof https {
    return httpModule(this.tls);
  }

  private get agent(): http.Agent {
    if (!this.lazyAgent) {
      const mod = this.mod;
      this.lazyAgent = this.tls
        ? new (mod as typeof https).Agent({ keepAlive: true, maxSockets: 64, ca: this.o.ca })
        : new mod.Agent({ keepAlive: true, maxSockets: 64 });
    }
    return this.lazyAgent;
  }

  /** The bearer token this client presents (to hand to a helper process). */
  get token(): string | undefined {
    return this.o.token;
  }

  get target(): string {
    return this.o.url ?? `unix://${this.o.socketPath}`;
  }

  /** One JSON call over the small HTTP/1.1 client, its failures worded as node:http's are below. */
  private async viaPool(
    method: string,
    path: string,
    headers: Record<string, string>,
    payload: Buffer | undefined,
    signal?: AbortSignal,
  ): Promise<Http1Answer> {
    try {
      return await this.pool!.request(method, path, headers, payload, signal);
    } catch (err) {
      if (!(err instanceof Http1Error)) throw err;
      const cause = err.cause as NodeJS.ErrnoException;
      if (err.stage === 'abort') {
        const reason: unknown = signal?.reason;
        if (reason instanceof Error && reason.name === 'TimeoutError') {
          throw typedError('daemon_unreachable', `no answer from ${this.target} in time`, 'check that the node is up and reachable');
        }
        throw cause;
      }
      if (err.stage === 'connect') throw unreachable(this.target, cause);
      if (cause.code === 'ECONNRESET' || cause.code === 'EPIPE') throw interrupted();
      throw typedError('internal', `the node's answer could not be read: ${cause.message}`);
    }
  }

  /** A whole JSON answer: its value, or the error it carries. */
  private answer<T>(a: Http1Answer): T {
    const text = a.body.toString('utf8');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw typedError('internal', `node answered HTTP ${a.status} with a body that is not JSON`);
    }
    if (a.status >= 400) throw BerthError.fromWire((json as { error?: unknown })?.error, a.status);
    return json as T;
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {};
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    if (this.pool) return this.answer<T>(await this.viaPool(method, path, headers, payload, signal));
    const base = this.o.url ? new URL(this.o.url) : undefined;
    return new Promise<T>((resolve, reject) => {
      const req = this.mod.request(
        {
          agent: this.agent,
          method,
          path,
          headers,
          signal,
          ...(base ? { host: base.hostname, port: Number(base.port) } : { socketPath: this.o.socketPath }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', () => reject(interrupted()));
          res.on('aborted', () => reject(interrupted()));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              return reject(typedError('internal', `node answered HTTP ${res.statusCode} with a body that is not JSON`));
            }
            if ((res.statusCode ?? 500) >= 400) return reject(BerthError.fromWire((json as { error?: unknown })?.error, res.statusCode));
            resolve(json as T);
          });
        },
      );
      let sent = false;
      req.on('finish', () => (sent = true));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') {
          const reason: unknown = signal?.reason;
          if (reason instanceof Error && reason.name === 'TimeoutError') {
            return reject(
              typedError('daemon_unreachable', `no answer from ${this.target} in time`, 'check that the node is up and reachable'),
            );
          }
          return reject(err);
        }
        if (sent && (err.code === 'ECONNRESET' || /socket hang up/.test(err.message))) return reject(interrupted());
        reject(unreachable(this.target, err));
      });
      req.end(payload);
    });
  }

  /**
   * One call of a route in the contract. The answer is checked against the route's response
   * schema: a node that answers outside the contract is an error here, never a surprise later.
   */
  async call<K extends RouteId>(id: K, args: CallArgs<K> = {}): Promise<ResponseOf<K>> {
    const spec = (await contractShapes()).routes[id];
    if (!spec) throw typedError('internal', `no route ${id} in the contract this client was built with`);
    let path = fillPath(spec.path, args.params ?? {});
    const q = Object.entries(args.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    if (q.length) path += `?${new URLSearchParams(q).toString()}`;
    const raw = await this.request<unknown>(spec.method, path, args.body, args.signal);
    return checked(spec.response, raw, `the node's answer to ${id}`) as ResponseOf<K>;
  }

  /** A route's path, filled in. */
  private async routePath(id: RouteId, params: Record<string, string>): Promise<string> {
    return fillPath((await contractShapes()).routes[id]!.path, params);
  }

  /**
   * One call of a `progress` route: each progress line goes to `onProgress` as it comes, and the
   * result line is the answer, checked against the route's response schema; an error line (or
   * an error answer) is thrown as its typed error.
   */
  async callProgress<K extends RouteId>(
    id: K,
    args: CallArgs<K> & { onProgress?: (p: ProgressReport) => void } = {},
  ): Promise<ResponseOf<K>> {
    const shapes = await contractShapes();
    const spec = shapes.routes[id];
    const lineShape = shapes.messages.ProgressLine;
    if (!spec || !lineShape) throw typedError('internal', `no progress route ${id} in the contract this client was built with`);
    const payload = Buffer.from(JSON.stringify(args.body ?? {}));
    const headers: Record<string, string> = {
      accept: 'application/x-ndjson',
      'content-type': 'application/json',
      'content-length': String(payload.length),
    };
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    const base = this.o.url ? new URL(this.o.url) : undefined;
    const path = fillPath(spec.path, args.params ?? {});
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = this.mod.request(
        {
          agent: this.agent,
          method: spec.method,
          path,
          headers,
          signal: args.signal,
          ...(base ? { host: base.hostname, port: Number(base.port) } : { socketPath: this.o.socketPath }),
        },
        (r) => {
          if ((r.statusCode ?? 500) < 400) return resolve(r);
          refusal(r, `node answered HTTP ${r.statusCode}`).then(reject, reject);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(err.name === 'AbortError' ? err : unreachable(this.target, err)));
      req.end(payload);
    });
    let buf = '';
    let result: { value: unknown } | undefined;
    try {
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString('utf8');
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const text = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!text.trim()) continue;
          const line = checked(lineShape, JSON.parse(text), `the node's progress for ${id}`) as ProgressLine;
          if ('progress' in line) args.onProgress?.(line.progress);
          else if ('error' in line) throw BerthError.fromWire(line.error, 500);
          else result = { value: line.result };
        }
      }
    } catch (err) {
      if (err instanceof BerthError || args.signal?.aborted) throw err;
      throw interrupted();
    }
    if (!result) throw interrupted();
    return checked(spec.response, result.value, `the node's answer to ${id}`) as ResponseOf<K>;
  }

  node(signal?: AbortSignal): Promise<NodeInfo> {
    return this.call('nodeInfo', { signal });
  }

  createEnv(req: CreateEnvRequest, signal?: AbortSignal): Promise<CreatedEnv> {
    return this.call('createEnv', { body: req, signal });
  }

  async listEnvs(signal?: AbortSignal): Promise<EnvInfo[]> {
    return (await this.call('listEnvs', { signal })).envs;
  }

  getEnv(name: string, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('getEnv', { params: { name }, signal });
  }

  /** Removes an environment; its work is snapshotted first unless `discard`. */
  removeEnv(name: string, opts: { discard?: boolean } = {}, signal?: AbortSignal): Promise<{ removed: string; snapshot: string | null }> {
    return this.call('removeEnv', { params: { name }, query: { discard: opts.discard ? '1' : undefined }, signal });
  }

  pause(name: string, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('pause', { params: { name }, signal });
  }

  resume(name: string, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('resume', { params: { name }, signal });
  }

  /** Its egress policy, budget, recent denials, destinations and the suggested allow list. */
  egress(name: string, signal?: AbortSignal): Promise<EgressReport> {
    return this.call('getEgress', { params: { name }, signal });
  }

  /** Changes a running environment's egress policy (the node's token only). */
  setEgress(name: string, policy: string, signal?: AbortSignal): Promise<EgressSummary> {
    return this.call('setEgress', { params: { name }, body: { policy }, signal });
  }

  /** Sets or raises its budgets, `egress=1GB,cpu=4h` (the node's token only). */
  setBudget(name: string, budget: string, signal?: AbortSignal): Promise<EgressSummary> {
    return this.call('setBudget', { params: { name }, body: { budget }, signal });
  }

  /** The agent's own state and a note (an agent reports itself). */
  setStatus(name: string, req: StatusRequest, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('setStatus', { params: { name }, body: req, signal });
  }

  /** A human takes the environment over: a lease, exclusive or not (the node's token only). */
  takeover(name: string, req: TakeoverRequest = {}, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('takeover', { params: { name }, body: req, signal });
  }

  /** Ends the lease, leaving a note for the agent. */
  handback(name: string, req: HandbackRequest = {}, signal?: AbortSignal): Promise<EnvInfo> {
    return this.call('handback', { params: { name }, body: req, signal });
  }

  identity(name: string, signal?: AbortSignal): Promise<IdentityInfo> {
    return this.call('identity', { params: { name }, signal });
  }

  snap(name: string, req: SnapRequest = {}, signal?: AbortSignal): Promise<SnapshotInfo> {
    return this.call('snap', { params: { name }, body: req, signal });
  }

  restore(name: string, snapshot: string, signal?: AbortSignal): Promise<{ restored: string; files: number }> {
    return this.call('restore', { params: { name }, body: { snapshot }, signal });
  }

  async snapshots(signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return (await this.call('listSnapshots', { signal })).snapshots;
  }

  gc(signal?: AbortSignal): Promise<GcResult> {
    return this.call('gc', { signal });
  }

  async tokens(signal?: AbortSignal): Promise<TokenInfo[]> {
    return (await this.call('listTokens', { signal })).tokens;
  }

  createToken(req: TokenCreateRequest, signal?: AbortSignal): Promise<TokenCreated> {
    return this.call('createToken', { body: req, signal });
  }

  removeToken(id: string, signal?: AbortSignal): Promise<{ removed: string }> {
    return this.call('removeToken', { params: { token: id }, signal });
  }

  async secrets(signal?: AbortSignal): Promise<SecretInfo[]> {
    return (await this.call('listSecrets', { signal })).secrets;
  }

  setSecret(name: string, req: SecretSetRequest, signal?: AbortSignal): Promise<SecretInfo> {
    return this.call('setSecret', { params: { secret: name }, body: req, signal });
  }

  removeSecret(name: string, signal?: AbortSignal): Promise<{ removed: string }> {
    return this.call('removeSecret', { params: { secret: name }, signal });
  }

  /**
   * The node's events as they happen, from after `since` (an event id) when given, so a
   * subscriber that reconnects misses nothing. Ends when `signal` aborts. A stream that drops
   * is opened again from the last event seen; `onConnection` hears each time it opens (true)
   * and drops (false, with why).
   */
  async *events(
    opts: { env?: string; since?: number; signal?: AbortSignal; onConnection?: (up: boolean, why?: Error) => void } = {},
  ): AsyncGenerator<BerthEvent> {
    let last = opts.since;
    for (let attempt = 0; ; attempt++) {
      const q = new URLSearchParams();
      if (opts.env) q.set('env', opts.env);
      if (last !== undefined) q.set('since', String(last));
      const path = `${await this.routePath('events', {})}?${q.toString()}`;
      const shape: Shape = (await contractShapes()).messages.BerthEvent!;
      // The first connection fails at once when no node answers; a later one (the node went
      // away, a restart) is tried again for a while, from the last event seen.
      const res = attempt === 0 ? await this.open('GET', path, opts.signal) : await this.reopen(path, opts.signal);
      if (!res) return;
      opts.onConnection?.(true);
      let buf = '';
      let ended = false;
      try {
        for await (const chunk of res) {
          buf += (chunk as Buffer).toString('utf8');
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            // Where a stream without `since` starts, so that a reconnect before any event misses none.
            const start = /^: connected at event (\d+)$/m.exec(block);
            if (start && last === undefined) last = Number(start[1]);
            const data = block
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trimStart())
              .join('\n');
            if (!data) continue;
            const e = checked(shape, JSON.parse(data), 'an event from the node') as BerthEvent;
            last = e.id;
            yield e;
          }
        }
        ended = true;
      } catch (err) {
        if (opts.signal?.aborted) return;
        if (!(err instanceof Error) || !/aborted|ECONNRESET|socket hang up/.test(err.message)) throw err;
        opts.onConnection?.(false, err);
      }
      if (opts.signal?.aborted) return;
      if (ended) opts.onConnection?.(false, new Error('the node closed the event stream'));
      if (ended) await sleep(200, undefined, { signal: opts.signal }).catch(() => undefined);
    }
  }

  /** The event stream again after it dropped: tried for a minute while no node answers; undefined once `signal` aborts. */
  private async reopen(path: string, signal?: AbortSignal): Promise<http.IncomingMessage | undefined> {
    const t0 = Date.now();
    for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
      if (signal?.aborted) return undefined;
      try {
        return await this.open('GET', path, signal);
      } catch (err) {
        if (signal?.aborted) return undefined;
        if (!(err instanceof BerthError && err.code === 'daemon_unreachable') || Date.now() - t0 > RECONNECT_FOR_MS) throw err;
      }
      await sleep(wait, undefined, { signal }).catch(() => undefined);
    }
  }

  /** A streamed answer (server-sent events), after checking its status. */
  private open(method: string, path: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    const base = this.o.url ? new URL(this.o.url) : undefined;
    return new Promise((resolve, reject) => {
      const req = this.mod.request(
        {
          agent: this.agent,
          method,
          path,
          headers,
          signal,
          ...(base ? { host: base.hostname, port: Number(base.port) } : { socketPath: this.o.socketPath }),
        },
        (res) => {
          if ((res.statusCode ?? 500) < 400) return resolve(res);
          refusal(res, `node answered HTTP ${res.statusCode}`).then(reject, reject);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(err.name === 'AbortError' ? err : unreachable(this.target, err)));
      req.end();
    });
  }

  /** Raw bytes (blobs, manifests). */
  async raw(method: string, path: string, body?: Buffer | Readable, length?: number): Promise<Buffer> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (Buffer.isBuffer(body)) headers['content-length'] = String(body.length);
    else if (body && length !== undefined) headers['content-length'] = String(length);
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    const base = this.o.url ? new URL(this.o.url) : undefined;
    return new Promise<Buffer>((resolve, reject) => {
      const req = this.mod.request(
        {
          agent: this.agent,
          method,
          path,
          headers,
          ...(base ? { host: base.hostname, port: Number(base.port) } : { socketPath: this.o.socketPath }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const data = Buffer.concat(chunks);
            if ((res.statusCode ?? 500) >= 400) {
              try {
                return reject(BerthError.fromWire((JSON.parse(data.toString('utf8')) as { error?: unknown }).error, res.statusCode));
              } catch {
                return reject(typedError('internal', `node answered HTTP ${res.statusCode}`));
              }
            }
            resolve(data);
          });
          res.on('error', () => reject(interrupted()));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(this.target, err)));
      if (body === undefined || Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (err) => {
          reject(err);
          req.destroy();
        });
        body.pipe(req);
      }
    });
  }

  /** A tar stream unpacked into a directory of the environment (the engine unpacks it, confined). */
  async putArchive(name: string, dir: string, tar: Readable, size?: number): Promise<{ dir: string }> {
    const out = await this.raw('PUT', `/v1/envs/${encodeURIComponent(name)}/archive?path=${encodeURIComponent(dir)}`, tar, size);
    return JSON.parse(out.toString('utf8')) as { dir: string };
  }

  /** A file inside the environment, whole. */
  async readFile(name: string, path: string): Promise<Buffer> {
    return this.raw('GET', `${await this.routePath('readFile', { name })}?${new URLSearchParams({ path }).toString()}`);
  }

  /** Writes a file inside the environment (its parent directories are made). */
  async writeFile(name: string, path: string, data: Buffer, mode?: number): Promise<{ path: string; bytes: number }> {
    const q = new URLSearchParams({ path, ...(mode !== undefined ? { mode: mode.toString(8) } : {}) });
    const out = await this.raw('PUT', `${await this.routePath('writeFile', { name })}?${q.toString()}`, data);
    const spec = (await contractShapes()).routes.writeFile!;
    return checked(spec.response, JSON.parse(out.toString('utf8')), "the node's answer to writeFile") as { path: string; bytes: number };
  }

  listFiles(name: string, path: string, signal?: AbortSignal): Promise<ResponseOf<'listFiles'>> {
    return this.call('listFiles', { params: { name }, query: { path }, signal });
  }

  async missingBlobs(hashes: string[]): Promise<string[]> {
    return (await this.call('missingBlobs', { body: { hashes } })).missing;
  }

  getBlob(hash: string): Promise<Buffer> {
    return this.raw('GET', `/v1/blobs/${hash}`);
  }

  async putBlob(hash: string, data: Buffer): Promise<void> {
    await this.raw('PUT', `/v1/blobs/${hash}`, data);
  }

  snapshotManifest(id: string): Promise<Buffer> {
    return this.raw('GET', `/v1/snapshots/${encodeURIComponent(id)}/manifest`);
  }

  importSnapshot(req: SnapshotImport): Promise<SnapshotInfo> {
    return this.call('importSnapshot', { body: req });
  }

  /** Applies a pushed snapshot; a conflict comes back as an error with code `conflict`. */
  apply(name: string, req: { snapshot: string; since: string }): Promise<ApplyResult> {
    return this.call('apply', { params: { name }, body: req });
  }

  /** A raw TCP stream to a port inside the environment. */
  connect(name: string, port: number): WebSocket {
    return this.socket(`/v1/envs/${encodeURIComponent(name)}/connect/${port}`);
  }

  setPool(req: PoolRequest, signal?: AbortSignal): Promise<PoolInfo> {
    return this.call('setPool', { body: req, signal });
  }

  async pools(signal?: AbortSignal): Promise<PoolInfo[]> {
    return (await this.call('listPools', { signal })).pools;
  }

  /** One round trip; output is buffered (up to 16 MiB per command). */
  exec(name: string, req: ExecRequest, signal?: AbortSignal): Promise<ExecResult> {
    return this.call('exec', { params: { name }, body: req, signal });
  }

  describe(name: string, signal?: AbortSignal): Promise<DescribeResult> {
    return this.call('describe', { params: { name }, signal });
  }

  stats(name: string, signal?: AbortSignal): Promise<EnvStats> {
    return this.call('stats', { params: { name }, signal });
  }

  /** Many commands, one round trip. */
  batch(name: string, req: BatchRequest, signal?: AbortSignal): Promise<BatchResult> {
    return this.call('batch', { params: { name }, body: req, signal });
  }

  startService(name: string, req: ServiceStartRequest, signal?: AbortSignal): Promise<ServiceInfo> {
    return this.call('startService', { params: { name }, body: req, signal });
  }

  stopService(name: string, service: string, signal?: AbortSignal): Promise<ServiceInfo> {
    return this.call('stopService', { params: { name, service }, signal });
  }

  async services(name: string, signal?: AbortSignal): Promise<ServiceInfo[]> {
    return (await this.call('listServices', { params: { name }, signal })).services;
  }

  verify(name: string, req: VerifyRequest, signal?: AbortSignal): Promise<VerifyResult> {
    return this.call('verify', { params: { name }, body: req, signal });
  }

  /** A WebSocket to the node, with auth. */
  socket(path: string): WebSocket {
    const url = this.o.url ? `${this.o.url.replace(/^http/, 'ws')}${path}` : `ws+unix://${this.o.socketPath}:${path}`;
    return new (WebSocketClass())(url, {
      headers: this.o.token ? { authorization: `Bearer ${this.o.token}` } : {},
      perMessageDeflate: false,
      ...(this.o.ca ? { ca: this.o.ca } : {}),
    });
  }

  /** A service's logs: the recent tail, then (with follow) new lines as they come. */
  logs(
    name: string,
    service: string,
    opts: { follow?: boolean; tailBytes?: number },
    onData: (c: Buffer) => void,
  ): { done: Promise<void>; stop(): void } {
    const q = new URLSearchParams({ follow: opts.follow ? '1' : '0', tail: String(opts.tailBytes ?? 65536) });
    const ws = this.socket(`/v1/envs/${encodeURIComponent(name)}/logs/${encodeURIComponent(service)}?${q.toString()}`);
    const done = new Promise<void>((resolve, reject) => {
      let settled = false;
      ws.on('message', (data, isBinary) => {
        if (isBinary) return onData(data as Buffer);
        const msg = JSON.parse(String(data)) as { end?: boolean; error?: unknown };
        settled = true;
        if (msg.error) reject(BerthError.fromWire(msg.error));
        else resolve();
      });
      wsErrors(ws, this.target, reject, () => settled);
      ws.on('close', () => (settled ? undefined : resolve()));
    });
    return { done, stop: () => ws.close() };
  }

  /** An interactive terminal, or a read-only view of one (`watch`). */
  pty(
    name: string,
    opts: { cols: number; rows: number; argv?: string[]; watch?: string },
    onOutput: (c: Buffer) => void,
  ): {
    session: Promise<string>;
    write(c: Buffer): void;
    resize(cols: number, rows: number): void;
    signal(sig: string): void;
    close(): void;
    exit: Promise<{ exitCode: number; signal: string | null }>;
  } {
    const q = new URLSearchParams({ cols: String(opts.cols), rows: String(opts.rows) });
    for (const a of opts.argv ?? []) q.append('argv', a);
    const base = `/v1/envs/${encodeURIComponent(name)}/pty`;
    const ws = this.socket(opts.watch ? `${base}/${encodeURIComponent(opts.watch)}/watch` : `${base}?${q.toString()}`);
    let sessionResolve: (id: string) => void = () => {};
    let sessionReject: (e: unknown) => void = () => {};
    const session = new Promise<string>((res, rej) => {
      sessionResolve = res;
      sessionReject = rej;
    });
    session.catch(() => {});
    const queue: Array<Buffer | string> = [];
    const send = (d: Buffer | string): void => {
      if (ws.readyState === WS_OPEN) ws.send(d);
      else if (ws.readyState === WS_CONNECTING) queue.push(d);
    };
    ws.on('open', () => queue.splice(0).forEach((d) => ws.send(d)));
    const exit = new Promise<{ exitCode: number; signal: string | null }>((resolve, reject) => {
      let settled = false;
      ws.on('message', (data, isBinary) => {
        if (isBinary) return onOutput(data as Buffer);
        const msg = JSON.parse(String(data)) as { session?: string; exit?: { exitCode: number; signal: string | null }; error?: unknown };
        if (msg.session) sessionResolve(msg.session);
        if (msg.exit) {
          settled = true;
          resolve(msg.exit);
        }
        if (msg.error) {
          settled = true;
          const e = BerthError.fromWire(msg.error);
          sessionReject(e);
          reject(e);
        }
      });
      wsErrors(
        ws,
        this.target,
        (e) => {
          sessionReject(e);
          reject(e);
        },
        () => settled,
      );
      ws.on('close', () => {
        if (!settled) {
          sessionReject(interrupted());
          reject(interrupted());
        }
      });
    });
    // A caller that only watches output need not await the exit: its failure is theirs to
    // read, never an unhandled rejection that takes their process down.
    exit.catch(() => {});
    return {
      session,
      write: (c) => send(c),
      resize: (cols, rows) => send(JSON.stringify({ resize: [cols, rows] })),
      signal: (sig) => send(JSON.stringify({ signal: sig })),
      close: () => ws.close(),
      exit,
    };
  }

  /** Streams stdout and stderr as they come, and takes stdin. */
  execStream(
    name: string,
    req: ExecRequest & { interactiveStdin?: boolean },
    sink: { stdout: (c: Buffer) => void; stderr: (c: Buffer) => void },
  ): ExecHandle {
    const path = `/v1/envs/${encodeURIComponent(name)}/exec/ws`;
    const url = this.o.url ? `${this.o.url.replace(/^http/, 'ws')}${path}` : `ws+unix://${this.o.socketPath}:${path}`;
    const ws = new (WebSocketClass())(url, {
      headers: this.o.token ? { authorization: `Bearer ${this.o.token}` } : {},
      perMessageDeflate: false,
      ...(this.o.ca ? { ca: this.o.ca } : {}),
    });
    const queue: Buffer[] = [];
    const sendOrQueue = (b: Buffer): void => {
      if (ws.readyState === WS_OPEN) ws.send(b);
      else queue.push(b);
    };
    const shapes = contractShapes();
    const done = new Promise<ExecStreamResult>((resolve, reject) => {
      let settled = false;
      ws.on('open', () => {
        ws.send(JSON.stringify(req));
        for (const b of queue.splice(0)) ws.send(b);
      });
      ws.on('message', (data, isBinary) => {
        const buf = data as Buffer;
        if (isBinary) {
          const m = untag(buf);
          if (m?.tag === EXEC_TAG.stdout) sink.stdout(m.payload);
          else if (m?.tag === EXEC_TAG.stderr) sink.stderr(m.payload);
          return;
        }
        settled = true;
        const text = buf.toString('utf8');
        shapes
          .then((table) => {
            const end = checked(table.messages.ExecEnd!, JSON.parse(text), 'the message the node ended the command with') as ExecEnd;
            if ('exit' in end) resolve(end.exit);
            else reject(BerthError.fromWire(end.error));
          })
          .catch(reject);
      });
      ws.on('unexpected-response', (_req, res) => {
        refusal(res, `node refused the stream (HTTP ${res.statusCode})`).then((e) => {
          settled = true;
          reject(e);
        }, reject);
      });
      ws.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        reject(
          ws.readyState === WS_CONNECTING || err.code === 'ECONNREFUSED' || err.code === 'ENOENT'
            ? unreachable(this.target, err)
            : interrupted(),
        );
      });
      ws.on('close', () => {
        if (!settled) reject(interrupted());
      });
    });
    const buffered = (): number => ws.bufferedAmount + queue.reduce((n, b) => n + b.length, 0);
    let ended = false;
    done.then(
      () => (ended = true),
      () => (ended = true),
    );
    let holding = false;
    return {
      writeStdin: (c) => sendOrQueue(tagged(EXEC_TAG.stdin, c)),
      feed: (c, source) => {
        sendOrQueue(tagged(EXEC_TAG.stdin, c));
        if (holding || buffered() <= FLOW.highWater) return;
        holding = true;
        source.pause();
        const timer = setInterval(() => {
          if (!ended && buffered() >= FLOW.lowWater) return;
          clearInterval(timer);
          holding = false;
          source.resume();
        }, 10);
      },
      buffered,
      pauseOutput: () => ws.pause(),
      resumeOutput: () => ws.resume(),
      endStdin: () => sendOrQueue(tagged(EXEC_TAG.stdinEnd)),
      kill: (sig = 'SIGTERM') => sendOrQueue(tagged(EXEC_TAG.signal, sig)),
      wait: () => done,
    };
  }

  close(): void {
    this.pool?.destroy();
    this.lazyAgent?.destroy();
  }
}

/** The error a refusing answer carries (its JSON `error`), or `fallback` when it carries none. */
function refusal(res: http.IncomingMessage, fallback: string): Promise<BerthError> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', () => resolve(typedError('internal', fallback)));
    res.on('end', () => {
      try {
        resolve(BerthError.fromWire((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: unknown }).error, res.statusCode));
      } catch {
        resolve(typedError('internal', fallback));
      }
    });
  });
}

function wsErrors(ws: WebSocket, target: string, reject: (e: unknown) => void, settled: () => boolean): void {
  ws.on('unexpected-response', (_req, res) => {
    refusal(res, `node refused the stream (HTTP ${res.statusCode})`).then(reject, reject);
  });
  ws.on('error', (err: NodeJS.ErrnoException) => {
    if (settled()) return;
    reject(
      ws.readyState === WS_CONNECTING || err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? unreachable(target, err) : interrupted(),
    );
  });
}

function unreachable(target: string, err: NodeJS.ErrnoException): BerthError {
  return typedError(
    'daemon_unreachable',
    `no berth daemon answers at ${target} (${err.code ?? err.message})`,
    'start one with `berth daemon`, or run `berth up`',
  );
}

function interrupted(): BerthError {
  return typedError(
    'interrupted',
    'the berth daemon stopped while handling the request',
    'run `berth ls` to see the state; the daemon cleans up half-made work when it starts again',
  );
}
