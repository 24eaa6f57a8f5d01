// The wire contract: every route of the node API as data. The daemon keeps one handler per
// route id, the client makes typed calls by route id and validates every answer, the OpenAPI
// document is generated from this table, and tests walk it (auth, scopes, schemas).
import { z } from 'zod';
import {
  ApplyRequest,
  ApplyResult,
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
  PoolInfo,
  PoolRequest,
  RestoreResult,
  ServiceInfo,
  ServiceStartRequest,
  SnapRequest,
  SnapshotImport,
  SnapshotInfo,
  VerifyRequest,
  VerifyResult,
} from './api.js';
import { BerthEvent } from './events.js';
import { HandbackRequest, StatusRequest, TakeoverRequest } from './supervision.js';
import { TokenCreateRequest, TokenCreated, TokenInfo } from './tokens.js';
import { TOOLCHAIN_ROUTES } from './toolchain-api.js';
import { SecretInfo, SecretSetRequest } from './secrets.js';
import { WireErrorSchema } from './wire-error.js';

/**
 * Who may call a route:
 * - `any`: every valid token;
 * - `node`: the node's own token only (nodes, pools, blobs, tokens, the node's configuration);
 * - `list`: every token; an agent's token sees only its own environments;
 * - `create`: the node's token, and agent tokens that may write (the environment gets the agent's label);
 * - `env-read`: the environment named in the path, read-only tokens included;
 * - `env-write`: the environment named in the path, tokens that may write.
 */
export type Access = 'any' | 'node' | 'list' | 'create' | 'env-read' | 'env-write';

/**
 * - `json`: a JSON request body (or none) and a JSON answer;
 * - `bytes`: the answer is raw bytes (blobs, manifests);
 * - `upload`: the request body is raw bytes (a blob, a tar), the answer JSON;
 * - `websocket`: an upgrade; messages as the route's codec says;
 * - `events`: server-sent events;
 * - `progress`: a JSON request; the answer is NDJSON, progress lines and then the result (or
 *   the error) on a line of its own (src/core/toolchain-api.ts: ProgressLine).
 */
export type RouteKind = 'json' | 'bytes' | 'upload' | 'websocket' | 'events' | 'progress';

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** With `{param}` segments, each named in PARAMS. */
  path: string;
  kind: RouteKind;
  access: Access;
  summary: string;
  query?: z.AnyZodObject;
  request?: z.ZodTypeAny;
  /** The success answer: JSON for `json` and `upload`, the result line's for `progress`, the first message's shape otherwise. */
  response: z.ZodTypeAny;
  /** The success status, when not 200. */
  status?: number;
}

/** Path parameters: what each `{name}` in a path may hold. */
export const PARAMS = {
  name: z.string().min(1).max(253),
  service: z.string().min(1).max(63),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  snapshot: z.string().min(1).max(80),
  port: z.string().regex(/^\d{1,5}$/),
  session: z.string().min(1).max(64),
  token: z.string().min(1).max(64),
  secret: z.string().min(1).max(63),
} as const;
export type ParamName = keyof typeof PARAMS;

const Removed = z.object({ removed: z.string(), snapshot: z.string().nullable() });
const Envs = z.object({ envs: z.array(EnvInfo) });
const Snapshots = z.object({ snapshots: z.array(SnapshotInfo) });
const Pools = z.object({ pools: z.array(PoolInfo) });
const Services = z.object({ services: z.array(ServiceInfo) });
const PtySession = z.object({ id: z.string(), env: z.string(), argv: z.array(z.string()), startedAt: z.string(), watchers: z.number() });
const Flag = z.enum(['0', '1']);
const DirEntry = z.object({
  name: z.string(),
  type: z.enum(['file', 'dir', 'symlink', 'other']),
  size: z.number(),
  mode: z.number(),
  mtime: z.string(),
});

/** The first message of each WebSocket route, client to node, where it has one. */
export const ExecStreamRequest = ExecRequest.extend({
  /** stdin is a terminal the user types into: the command reads it as it comes. */
  interactiveStdin: z.boolean().optional(),
}).strict();
export type ExecStreamRequest = z.infer<typeof ExecStreamRequest>;

export const FetchRequest = z
  .object({
    repo: z.string().min(1).max(4096),
    commits: z
      .array(z.string().regex(/^[0-9a-f]{40}$/))
      .min(1)
      .max(16),
    remote: z
      .object({
        url: z.string().max(2048),
        token: z.string().max(4096).optional(),
        ca: z.string().max(65_536).optional(),
        env: z.string().max(63),
      })
      .strict(),
  })
  .strict();
export type FetchRequest = z.infer<typeof FetchRequest>;

export const ROUTES = {
  nodeInfo: { method: 'GET', path: '/v1/node', kind: 'json', access: 'any', summary: 'the node: id, version, engine', response: NodeInfo },
  listEnvs: { method: 'GET', path: '/v1/envs', kind: 'json', access: 'list', summary: 'environments', response: Envs },
  createEnv: {
    method: 'POST',
    path: '/v1/envs',
    kind: 'json',
    access: 'create',
    summary: 'a new environment (from a repository and ref, a snapshot, or an identity; claimed from a pool when one matches)',
    request: CreateEnvRequest,
    response: CreatedEnv,
    status: 201,
  },
  getEnv: { method: 'GET', path: '/v1/envs/{name}', kind: 'json', access: 'env-read', summary: 'one environment', response: EnvInfo },
  removeEnv: {
    method: 'DELETE',
    path: '/v1/envs/{name}',
    kind: 'json',
    access: 'env-write',
    summary: 'remove an environment, snapshotting it first unless discard=1',
    query: z.object({ discard: Flag.optional() }),
    response: Removed,
  },
  setUpstream: {
    method: 'PATCH',
    path: '/v1/envs/{name}',
    kind: 'json',
    access: 'node',
    summary: 'where pushes from an entered environment go back to',
    request: z.object({ upstream: CreateEnvRequest.shape.upstream }).strict(),
    response: EnvInfo,
  },
  pause: { method: 'POST', path: '/v1/envs/{name}/pause', kind: 'json', access: 'env-write', summary: 'freeze', response: EnvInfo },
  resume: { method: 'POST', path: '/v1/envs/{name}/resume', kind: 'json', access: 'env-write', summary: 'thaw', response: EnvInfo },
  getEgress: {
    method: 'GET',
    path: '/v1/envs/{name}/egress',
    kind: 'json',
    access: 'env-read',
    summary: 'its egress policy, budget, recent denials, every destination reached and the least-privilege allow list',
    response: EgressReport,
  },
  setEgress: {
    method: 'PUT',
    path: '/v1/envs/{name}/egress',
    kind: 'json',
    access: 'node',
    summary: "change a running environment's egress policy (new connections follow it, no restart)",
    request: z.object({ policy: z.string().max(8192) }).strict(),
    response: EgressSummary,
  },
  setBudget: {
    method: 'PUT',
    path: '/v1/envs/{name}/budget',
    kind: 'json',
    access: 'node',
    summary: 'set or raise its budgets (egress bytes, CPU time)',
    request: z.object({ budget: z.string().max(256) }).strict(),
    response: EgressSummary,
  },
  setStatus: {
    method: 'POST',
    path: '/v1/envs/{name}/status',
    kind: 'json',
    access: 'env-write',
    summary: "the agent's own state (working, waiting for a human, blocked, done) and a note",
    request: StatusRequest,
    response: EnvInfo,
  },
  takeover: {
    method: 'POST',
    path: '/v1/envs/{name}/takeover',
    kind: 'json',
    access: 'node',
    summary: "a human takes the environment over (a lease); with exclusive, the agent's commands are refused until the hand-back",
    request: TakeoverRequest,
    response: EnvInfo,
  },
  handback: {
    method: 'POST',
    path: '/v1/envs/{name}/handback',
    kind: 'json',
    access: 'node',
    summary: 'end the lease, leaving a note the agent reads',
    request: HandbackRequest,
    response: EnvInfo,
  },
  identity: {
    method: 'GET',
    path: '/v1/envs/{name}/identity',
    kind: 'json',
    access: 'env-read',
    summary: 'the pins that reproduce the environment',
    response: IdentityInfo,
  },
  describe: {
    method: 'GET',
    path: '/v1/envs/{name}/describe',
    kind: 'json',
    access: 'env-read',
    summary: 'everything the environment is, as the node and the environment itself see it',
    response: DescribeResult,
  },
  stats: {
    method: 'GET',
    path: '/v1/envs/{name}/stats',
    kind: 'json',
    access: 'env-read',
    summary: "CPU time, memory and pids now, from the environment's cgroup (nulls when it is not running)",
    response: EnvStats,
  },
  exec: {
    method: 'POST',
    path: '/v1/envs/{name}/exec',
    kind: 'json',
    access: 'env-write',
    summary: 'run a command; output buffered',
    request: ExecRequest,
    response: ExecResult,
  },
  execStream: {
    method: 'GET',
    path: '/v1/envs/{name}/exec/ws',
    kind: 'websocket',
    access: 'env-write',
    summary: 'run a command; output streamed, stdin and signals sent (see ws-codec)',
    request: ExecStreamRequest,
    response: z.object({}),
  },
  batch: {
    method: 'POST',
    path: '/v1/envs/{name}/batch',
    kind: 'json',
    access: 'env-write',
    summary: 'many commands, one round trip',
    request: BatchRequest,
    response: BatchResult,
  },
  snap: {
    method: 'POST',
    path: '/v1/envs/{name}/snapshots',
    kind: 'json',
    access: 'env-write',
    summary: 'snapshot the workspace',
    request: SnapRequest,
    response: SnapshotInfo,
    status: 201,
  },
  restore: {
    method: 'POST',
    path: '/v1/envs/{name}/restore',
    kind: 'json',
    access: 'env-write',
    summary: 'put the workspace back to a snapshot',
    request: z.object({ snapshot: z.string().min(1).max(80) }).strict(),
    response: RestoreResult,
  },
  apply: {
    method: 'POST',
    path: '/v1/envs/{name}/apply',
    kind: 'json',
    access: 'node',
    summary: 'apply a pushed change (409 with the conflicts)',
    request: ApplyRequest,
    response: ApplyResult,
  },
  putArchive: {
    method: 'PUT',
    path: '/v1/envs/{name}/archive',
    kind: 'upload',
    access: 'node',
    summary: 'a tar unpacked by the engine into a directory of the environment',
    query: z.object({ path: z.string().max(4096) }),
    response: z.object({ dir: z.string() }),
  },
  readFile: {
    method: 'GET',
    path: '/v1/envs/{name}/files',
    kind: 'bytes',
    access: 'env-write',
    summary: 'a file inside the environment (at most 32 MiB)',
    query: z.object({ path: z.string().min(1).max(4096) }),
    response: z.instanceof(Uint8Array),
  },
  writeFile: {
    method: 'PUT',
    path: '/v1/envs/{name}/files',
    kind: 'upload',
    access: 'env-write',
    summary: 'write a file inside the environment (at most 32 MiB; parents are made)',
    query: z.object({
      path: z.string().min(1).max(4096),
      mode: z
        .string()
        .regex(/^[0-7]{3,4}$/)
        .optional(),
    }),
    response: z.object({ path: z.string(), bytes: z.number() }),
  },
  listFiles: {
    method: 'GET',
    path: '/v1/envs/{name}/files/list',
    kind: 'json',
    access: 'env-write',
    summary: 'a directory inside the environment',
    query: z.object({ path: z.string().min(1).max(4096) }),
    response: z.object({ path: z.string(), entries: z.array(DirEntry) }),
  },
  listServices: {
    method: 'GET',
    path: '/v1/envs/{name}/services',
    kind: 'json',
    access: 'env-read',
    summary: 'services and their health',
    response: Services,
  },
  startService: {
    method: 'POST',
    path: '/v1/envs/{name}/services',
    kind: 'json',
    access: 'env-write',
    summary: 'start a service (declared in berth.json, or given)',
    request: ServiceStartRequest,
    response: ServiceInfo,
    status: 201,
  },
  stopService: {
    method: 'DELETE',
    path: '/v1/envs/{name}/services/{service}',
    kind: 'json',
    access: 'env-write',
    summary: 'stop a service',
    response: ServiceInfo,
  },
  logs: {
    method: 'GET',
    path: '/v1/envs/{name}/logs/{service}',
    kind: 'websocket',
    access: 'env-read',
    summary: "a service's log: the tail, then new output with follow=1",
    query: z.object({ follow: Flag.optional(), tail: z.string().regex(/^\d+$/).optional() }),
    response: z.object({}),
  },
  verify: {
    method: 'POST',
    path: '/v1/envs/{name}/verify',
    kind: 'json',
    access: 'env-write',
    summary: 'evidence that things work: services, HTTP, screenshots, tests',
    request: VerifyRequest,
    response: VerifyResult,
  },
  listPty: {
    method: 'GET',
    path: '/v1/envs/{name}/pty',
    kind: 'json',
    access: 'env-read',
    summary: 'open terminals',
    response: z.object({ sessions: z.array(PtySession) }),
  },
  pty: {
    method: 'GET',
    path: '/v1/envs/{name}/pty',
    kind: 'websocket',
    access: 'env-write',
    summary: 'a terminal',
    query: z.object({ cols: z.string().optional(), rows: z.string().optional(), argv: z.string().optional() }),
    response: z.object({ session: z.string() }),
  },
  watchPty: {
    method: 'GET',
    path: '/v1/envs/{name}/pty/{session}/watch',
    kind: 'websocket',
    access: 'env-read',
    summary: 'a read-only view of a terminal',
    response: z.object({ session: z.string(), readOnly: z.literal(true) }),
  },
  connect: {
    method: 'GET',
    path: '/v1/envs/{name}/connect/{port}',
    kind: 'websocket',
    access: 'env-write',
    summary: 'a TCP stream to a port inside the environment',
    response: z.object({ open: z.literal(true) }),
  },
  listSnapshots: { method: 'GET', path: '/v1/snapshots', kind: 'json', access: 'node', summary: 'snapshots', response: Snapshots },
  getSnapshot: {
    method: 'GET',
    path: '/v1/snapshots/{snapshot}',
    kind: 'json',
    access: 'node',
    summary: 'one snapshot',
    response: SnapshotInfo,
  },
  deleteSnapshot: {
    method: 'DELETE',
    path: '/v1/snapshots/{snapshot}',
    kind: 'json',
    access: 'node',
    summary: 'forget a snapshot (gc frees its blobs)',
    response: z.object({ removed: z.string() }),
  },
  snapshotManifest: {
    method: 'GET',
    path: '/v1/snapshots/{snapshot}/manifest',
    kind: 'bytes',
    access: 'node',
    summary: "a snapshot's manifest, as stored",
    response: z.instanceof(Uint8Array),
  },
  importSnapshot: {
    method: 'POST',
    path: '/v1/snapshots/import',
    kind: 'json',
    access: 'node',
    summary: 'record a snapshot whose manifest and blobs were sent',
    request: SnapshotImport,
    response: SnapshotInfo,
    status: 201,
  },
  gc: { method: 'POST', path: '/v1/gc', kind: 'json', access: 'node', summary: 'free what no snapshot needs', response: GcResult },
  missingBlobs: {
    method: 'POST',
    path: '/v1/blobs/missing',
    kind: 'json',
    access: 'node',
    summary: 'which of these blobs the node lacks',
    request: z.object({ hashes: z.array(PARAMS.hash).max(100_000) }).strict(),
    response: z.object({ missing: z.array(z.string()) }),
  },
  getBlob: {
    method: 'GET',
    path: '/v1/blobs/{hash}',
    kind: 'bytes',
    access: 'node',
    summary: 'one blob',
    response: z.instanceof(Uint8Array),
  },
  putBlob: {
    method: 'PUT',
    path: '/v1/blobs/{hash}',
    kind: 'upload',
    access: 'node',
    summary: 'store a blob (checked against its hash)',
    response: z.object({ hash: z.string(), added: z.boolean() }),
  },
  fetchRepo: {
    method: 'POST',
    path: '/v1/repos/fetch',
    kind: 'json',
    access: 'node',
    summary: "fetch commits from an environment on another node into this node's mirror",
    request: FetchRequest,
    response: z.object({ fetched: z.array(z.string()), present: z.array(z.string()) }),
  },
  listPools: { method: 'GET', path: '/v1/pools', kind: 'json', access: 'node', summary: 'warm pools', response: Pools },
  setPool: {
    method: 'PUT',
    path: '/v1/pools',
    kind: 'json',
    access: 'node',
    summary: 'set the size of a warm pool',
    request: PoolRequest,
    response: PoolInfo,
  },
  events: {
    method: 'GET',
    path: '/v1/events',
    kind: 'events',
    access: 'list',
    summary: 'the event stream (server-sent events; Last-Event-ID or since= resumes)',
    query: z.object({ env: z.string().max(253).optional(), since: z.string().regex(/^\d+$/).optional() }),
    response: BerthEvent,
  },
  listTokens: {
    method: 'GET',
    path: '/v1/tokens',
    kind: 'json',
    access: 'node',
    summary: 'tokens (never their secrets)',
    response: z.object({ tokens: z.array(TokenInfo) }),
  },
  createToken: {
    method: 'POST',
    path: '/v1/tokens',
    kind: 'json',
    access: 'node',
    summary: 'a token for an agent: its own environments only, optionally read-only or expiring; the secret is shown once',
    request: TokenCreateRequest,
    response: TokenCreated,
    status: 201,
  },
  removeToken: {
    method: 'DELETE',
    path: '/v1/tokens/{token}',
    kind: 'json',
    access: 'node',
    summary: 'revoke a token',
    response: z.object({ removed: z.string() }),
  },
  ...TOOLCHAIN_ROUTES,
  listSecrets: {
    method: 'GET',
    path: '/v1/secrets',
    kind: 'json',
    access: 'node',
    summary: 'secrets: names, hosts, headers, variables and who holds them (never their values)',
    response: z.object({ secrets: z.array(SecretInfo) }),
  },
  setSecret: {
    method: 'PUT',
    path: '/v1/secrets/{secret}',
    kind: 'json',
    access: 'node',
    summary: 'set a secret for one host: stored sealed; environments get a placeholder the node swaps for it on the wire',
    request: SecretSetRequest,
    response: SecretInfo,
  },
  removeSecret: {
    method: 'DELETE',
    path: '/v1/secrets/{secret}',
    kind: 'json',
    access: 'node',
    summary: 'remove a secret: live environments stop getting it at once',
    response: z.object({ removed: z.string() }),
  },
} as const satisfies Record<string, RouteSpec>;

export type RouteId = keyof typeof ROUTES;
export type RouteOf<K extends RouteId> = (typeof ROUTES)[K];
export type RequestOf<K extends RouteId> = RouteOf<K> extends { request: z.ZodTypeAny } ? z.input<RouteOf<K>['request']> : undefined;
export type ResponseOf<K extends RouteId> = z.infer<RouteOf<K>['response']>;

/** The error answer of every route. */
export const ErrorAnswer = z.object({ error: WireErrorSchema });

export interface CompiledRoute {
  id: RouteId;
  spec: RouteSpec;
  pattern: RegExp;
  params: ParamName[];
}

/** Each route's path as a pattern; `{param}` matches one path segment. */
export function compileRoutes(): CompiledRoute[] {
  return (Object.entries(ROUTES) as Array<[RouteId, RouteSpec]>).map(([id, spec]) => {
    const params: ParamName[] = [];
    const source = spec.path.replace(/\{(\w+)\}/g, (_, p: string) => {
      if (!(p in PARAMS)) throw new Error(`route ${id}: unknown path parameter ${p}`);
      params.push(p as ParamName);
      return '([^/]+)';
    });
    return { id, spec, pattern: new RegExp(`^${source}$`), params };
  });
}

export { fillPath } from './route-path.js';
