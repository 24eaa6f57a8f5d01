// One handler per route of the contract (src/core/contract.ts), keyed by the route's id. The
// server has matched the path, checked the caller's reach and parsed the body against the
// route's schema before a handler runs; a handler returns the answer's body, or an Answer
// when the status is not the route's usual one.
import { createHash } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type http from 'node:http';
import type { z } from 'zod';
import type { NodeInfo } from '../core/api.js';
import type { ROUTES, RouteId } from '../core/contract.js';
import { asBerthError, BerthError } from '../core/errors.js';
import type { Principal } from '../core/tokens.js';
import type { ProgressReport } from '../core/toolchain-api.js';
import {
  autostartServices,
  ask,
  describeEnv,
  envStats,
  listServices,
  putArchive,
  runBatch,
  startService,
  stopService,
} from '../env/env-ops.js';
import { execBuffered } from '../env/exec-service.js';
import type { EnvManager } from '../env/manager.js';
import type { PoolKeeper } from '../env/pools.js';
import type { PtySessions } from '../env/pty-sessions.js';
import { deleteSnapshot, gc, gcTrees, getSnapshot, listSnapshots, restore, snap, snapshotInfo } from '../env/snapshots.js';
import { applyPush, importSnapshot, missingBlobs } from '../env/transfer.js';
import { handback, setStatus, takeover } from '../env/supervision.js';
import { verify } from '../env/verify.js';
import { fetchFromEnv } from '../remote/git-remote.js';
import { capped, MAX_ARCHIVE, MAX_BLOB, readRaw } from './http-io.js';
import { reaches, scopeCreate } from './scope.js';
import type { TokenStore } from './tokens.js';
import { TOOLCHAIN_HANDLERS } from './toolchain-handlers.js';
import type { NodeSecrets } from '../env/secrets/node-secrets.js';

/** The largest file read or written through the files routes (the agent's own limit). */
const MAX_FILE = 32 * 1024 * 1024;

export interface NodeParts {
  manager: EnvManager;
  ptys: PtySessions;
  pools: PoolKeeper;
  tokens: TokenStore;
  secrets: NodeSecrets;
  nodeInfo: () => Promise<NodeInfo>;
  log: (line: string) => void;
}

export interface HandlerCtx<K extends RouteId> {
  parts: NodeParts;
  principal: Principal;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  body: (typeof ROUTES)[K] extends { request: z.ZodTypeAny } ? z.infer<(typeof ROUTES)[K]['request']> : undefined;
  /** Reports progress on a `progress` route (a no-op on the others). */
  progress: (p: ProgressReport) => void;
  /** An agent's call that changes the environment: aborted when a human takes it over exclusively. */
  takenOver?: AbortSignal;
}

/** An answer with a status other than the route's usual one. */
export class Answer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

/** Who takes over when a takeover names no holder: the user the node runs as, on its host. */
function operator(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = String(process.getuid?.() ?? 'operator');
  }
  return `${user}@${hostname()}`;
}

export type Handlers = { [K in RouteId]?: (c: HandlerCtx<K>) => Promise<unknown> };

export const HANDLERS: Handlers = {
  nodeInfo: ({ parts }) => parts.nodeInfo(),
  listEnvs: async ({ parts, principal }) => ({
    envs: parts.manager.list().filter((e) => reaches(principal, { name: e.name, state: e.state, agent: e.labels.agent ?? null })),
  }),
  createEnv: async ({ parts, principal, body, res }) => {
    const req = scopeCreate(principal, body, parts.manager.db, parts.manager.config.agentRepoRoots);
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableEnded) abort.abort();
    };
    res.once('close', onClose);
    try {
      const env = await parts.manager.create(req, abort.signal);
      // The environment exists either way; a service that cannot start is reported, not fatal.
      const auto = await autostartServices(parts.manager, env.name).then(
        (services) => (services.length ? { autostarted: services } : {}),
        (err: unknown) => ({ autostartError: asBerthError(err).oneLine() }),
      );
      return { ...env, ...auto };
    } finally {
      res.off('close', onClose);
    }
  },
  getEnv: async ({ parts, params }) => parts.manager.get(params.name!),
  removeEnv: async ({ parts, params, query }) => {
    const r = await parts.manager.remove(params.name!, {
      discard: query.get('discard') === '1',
      snapshot: (n) => snap(parts.manager, n, { reason: 'removed' }),
    });
    return { removed: params.name!, snapshot: r.snapshot };
  },
  setUpstream: async ({ parts, params, body }) => {
    const row = parts.manager.row(params.name!);
    parts.manager.db.updateEnv(row.id, { upstream: body.upstream ? JSON.stringify(body.upstream) : null });
    return parts.manager.get(params.name!);
  },
  pause: ({ parts, params }) => parts.manager.pause(params.name!),
  resume: ({ parts, params }) => parts.manager.resume(params.name!),
  setStatus: async ({ parts, params, body }) => setStatus(parts.manager, params.name!, body),
  takeover: async ({ parts, params, body }) => takeover(parts.manager, params.name!, body, operator()),
  handback: async ({ parts, params, body }) => handback(parts.manager, params.name!, body),
  identity: async ({ parts, params }) => parts.manager.get(params.name!).identity,
  getEgress: async ({ parts, params }) => parts.manager.egress.report(parts.manager.row(params.name!)),
  setEgress: ({ parts, params, body }) => parts.manager.egress.setPolicy(parts.manager.row(params.name!), body.policy),
  setBudget: ({ parts, params, body }) => parts.manager.egress.setBudget(parts.manager.row(params.name!), body.budget),
  describe: ({ parts, params }) => describeEnv(parts.manager, params.name!),
  stats: ({ parts, params }) => envStats(parts.manager, params.name!),
  exec: ({ parts, params, body, res, takenOver }) => execBuffered(parts.manager, params.name!, body, res, takenOver),
  batch: ({ parts, params, body }) => runBatch(parts.manager, params.name!, body),
  snap: ({ parts, params, body }) => snap(parts.manager, params.name!, body),
  restore: ({ parts, params, body }) => restore(parts.manager, params.name!, body.snapshot),
  apply: async ({ parts, params, body }) => {
    const r = await applyPush(parts.manager, params.name!, body.since, body.snapshot);
    if (r.applied) return r;
    return new Answer(409, {
      ...r,
      error: { code: 'conflict', message: `push conflicts with the agent's changes in ${r.conflicts.join(', ')}` },
    });
  },
  putArchive: ({ parts, params, query, req }) => putArchive(parts.manager, params.name!, query.get('path'), capped(req, MAX_ARCHIVE)),
  readFile: async ({ parts, params, query }) => {
    const res = await ask(parts.manager, params.name!, { op: 'readFile', path: query.get('path') ?? '', maxBytes: MAX_FILE });
    return Buffer.from(res.data ?? '', 'base64');
  },
  writeFile: async ({ parts, params, query, req }) => {
    const path = query.get('path') ?? '';
    const mode = query.get('mode');
    if (mode !== null && !/^[0-7]{3,4}$/.test(mode)) throw new BerthError('invalid_request', `mode must be octal, like 644, not ${mode}`);
    const data = await readRaw(req, MAX_FILE);
    const { conn } = await parts.manager.agentFor(params.name!);
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    if (parent) {
      const made = await conn.request({ op: 'exec', argv: ['mkdir', '-p', '--', parent] });
      if (!made.ok || made.exec?.exitCode !== 0) throw new BerthError('invalid_request', `cannot make the directory ${parent}`);
    }
    const r = await conn.request({ op: 'writeFile', path, mode: mode ? parseInt(mode, 8) : 0o644 }, data);
    if (!r.ok) throw new BerthError(r.error?.code === 'not_found' ? 'not_found' : 'invalid_request', r.error?.message ?? 'write failed');
    return { path, bytes: data.length };
  },
  listFiles: async ({ parts, params, query }) => {
    const path = query.get('path') ?? '/workspace';
    const res = await ask(parts.manager, params.name!, { op: 'listDir', path });
    return { path, entries: res.entries ?? [] };
  },
  listServices: async ({ parts, params }) => ({ services: await listServices(parts.manager, params.name!) }),
  startService: async ({ parts, params, body }) => {
    const s = await startService(parts.manager, params.name!, body);
    const row = parts.manager.row(params.name!);
    parts.manager.events.emit({
      type: 'service.health',
      env: row.name,
      agent: row.agent,
      service: s.name,
      state: s.state,
      detail: s.check?.detail ?? s.reason,
    });
    return s;
  },
  stopService: async ({ parts, params }) => {
    const s = await stopService(parts.manager, params.name!, params.service!);
    const row = parts.manager.row(params.name!);
    parts.manager.events.emit({ type: 'service.health', env: row.name, agent: row.agent, service: s.name, state: s.state, detail: null });
    return s;
  },
  verify: ({ parts, params, body }) => verify(parts.manager, params.name!, body),
  listPty: async ({ parts, params }) => ({ sessions: parts.ptys.list(parts.manager.get(params.name!).name) }),
  listSnapshots: async ({ parts }) => ({ snapshots: listSnapshots(parts.manager) }),
  getSnapshot: async ({ parts, params }) => snapshotInfo(getSnapshot(parts.manager, params.snapshot!)),
  deleteSnapshot: async ({ parts, params }) => {
    deleteSnapshot(parts.manager, params.snapshot!);
    return { removed: params.snapshot! };
  },
  snapshotManifest: async ({ parts, params }) =>
    parts.manager.store.get(getSnapshot(parts.manager, params.snapshot!).id.slice('sha256:'.length)),
  importSnapshot: async ({ parts, body }) => importSnapshot(parts.manager, body),
  gc: async ({ parts }) => ({ ...gc(parts.manager), treesRemoved: await gcTrees(parts.manager) }),
  missingBlobs: async ({ parts, body }) => ({ missing: missingBlobs(parts.manager, body.hashes) }),
  getBlob: async ({ parts, params }) => parts.manager.store.get(params.hash!),
  putBlob: async ({ parts, params, req }) => {
    const data = await readRaw(req, MAX_BLOB);
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== params.hash)
      throw new BerthError('corrupt', `the blob sent as ${params.hash!.slice(0, 12)} hashes to ${actual.slice(0, 12)}`);
    const r = parts.manager.store.put(data);
    return new Answer(r.added ? 201 : 200, { hash: r.hash, added: r.added });
  },
  fetchRepo: async ({ parts, body, res }) => {
    // A client that goes away ends the fetch and every process it started.
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableEnded) abort.abort();
    };
    res.once('close', onClose);
    try {
      return await fetchFromEnv(parts.manager.config.cacheRoot, body, abort.signal);
    } finally {
      res.off('close', onClose);
    }
  },
  listPools: async ({ parts }) => ({ pools: parts.pools.list() }),
  setPool: ({ parts, body }) => parts.pools.set(body),
  listTokens: async ({ parts }) => ({ tokens: parts.tokens.list() }),
  createToken: async ({ parts, body }) => parts.tokens.create(body),
  listSecrets: async ({ parts }) => ({ secrets: parts.secrets.vault.list() }),
  setSecret: async ({ parts, params, body }) => parts.secrets.vault.set(params.secret!, body),
  removeSecret: async ({ parts, params }) => {
    if (!parts.secrets.vault.remove(params.secret!)) {
      throw new BerthError('secret_unknown', `no secret named ${params.secret!} on this node`, 'list them with `berth secret ls`');
    }
    return { removed: params.secret! };
  },
  removeToken: async ({ parts, params }) => {
    parts.tokens.remove(params.token!);
    return { removed: params.token! };
  },
  ...TOOLCHAIN_HANDLERS,
};
