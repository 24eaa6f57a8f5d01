// What each kind of token reaches, decided from the route's access in the contract. An
// agent's token reaches its own environments only; another agent's environment does not
// exist for it (404, so names do not leak), and node-wide routes are refused (403).
import { resolve, sep } from 'node:path';
import { realpathSync } from 'node:fs';
import type { CreateEnvRequest } from '../core/api.js';
import type { Access } from '../core/contract.js';
import { BerthError } from '../core/errors.js';
import type { BerthEvent } from '../core/events.js';
import { decodeIdentity } from '../core/identity.js';
import type { Principal } from '../core/tokens.js';
import type { EnvRow, StateDb, SnapshotRow } from '../state/state-db.js';
import { leaseOf } from '../env/supervision.js';
import { takenOverError } from '../core/supervision.js';

type AgentPrincipal = Extract<Principal, { kind: 'agent' }>;

function noSuchEnv(name: string): BerthError {
  return new BerthError('not_found', `no environment named ${name}`, 'see `berth ls` for the environments on this node');
}

/** Whether an agent's token reaches this environment. */
export function reaches(p: Principal, env: Pick<EnvRow, 'name' | 'agent' | 'state'>): boolean {
  if (p.kind === 'node') return true;
  if (env.state === 'pooled') return false;
  return env.agent === p.agent && (p.envs === null || p.envs.includes(env.name));
}

/**
 * Refuses a call the principal may not make; `envName` is the path's environment, if any.
 * Under an exclusive takeover an agent's token may read its environment and report its own
 * status (`route` setStatus), nothing else that writes.
 */
export function checkAccess(p: Principal, access: Access, db: StateDb, envName?: string, route?: string): void {
  if (p.kind === 'node' || access === 'any' || access === 'list') return;
  if (access === 'node') throw new BerthError('forbidden', "an agent's token cannot use this part of the node API", "use the node's token");
  if (p.readOnly && access !== 'env-read')
    throw new BerthError('forbidden', 'this token is read-only', 'it can list, describe and read logs; ask for a token that may write');
  if (access === 'create') return;
  if (envName === undefined) throw new BerthError('internal', 'an environment route without an environment');
  const row = db.envByName(envName);
  if (!row || !reaches(p, row)) throw noSuchEnv(envName);
  if (access === 'env-write' && route !== 'setStatus') {
    const lease = leaseOf(row);
    if (lease?.exclusive) throw takenOverError(row.name, lease);
  }
}

/** An event the principal may see. */
export function sees(p: Principal, e: BerthEvent): boolean {
  if (p.kind === 'node') return true;
  return e.agent === p.agent && (p.envs === null || (e.env !== null && p.envs.includes(e.env)));
}

/**
 * A create request from an agent's token: its environments carry its agent's label, name a
 * repository only by URL (or under the roots the node's operator allows), fork only its own
 * snapshots, and never set node-internal fields.
 */
export function scopeCreate(p: Principal, req: CreateEnvRequest, db: StateDb, repoRoots: string[]): CreateEnvRequest {
  if (p.kind === 'node') return req;
  const agent: AgentPrincipal = p;
  if (req.agent !== undefined && req.agent !== agent.agent)
    throw new BerthError('forbidden', `this token is for agent ${agent.agent}, not ${req.agent}`);
  if (req.upstream || req.placement) throw new BerthError('forbidden', "upstream and placement are set by nodes, not agents' tokens");
  if (agent.envs !== null && !agent.envs.includes(req.name))
    throw new BerthError('forbidden', `this token reaches only ${agent.envs.join(', ')}`, 'name one of those');
  const repo = req.identity ? decodeIdentity(req.identity).repo : req.repo;
  if (repo !== undefined) checkRepo(repo, repoRoots);
  if (req.snapshot) {
    const mine = db.snapshots().filter((s: SnapshotRow) => s.agent === agent.agent);
    const want = req.snapshot.startsWith('sha256:') ? req.snapshot : `sha256:${req.snapshot}`;
    if (!mine.some((s) => s.id.startsWith(want)))
      throw new BerthError('not_found', `no snapshot ${req.snapshot}`, "fork one of your own environments' snapshots");
  }
  return { ...req, agent: agent.agent };
}

const NETWORK_URL = /^(https?|ssh|git):\/\//i;

function checkRepo(repo: string, roots: string[]): void {
  if (NETWORK_URL.test(repo) || /^[^/\s]+@[^:\s]+:/.test(repo)) return;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo))
    throw new BerthError('forbidden', `an agent's token cannot name a ${repo.split(':')[0]} repository`, 'give an https, ssh or git URL');
  let real: string;
  try {
    real = realpathSync(resolve(repo));
  } catch {
    real = resolve(repo);
  }
  if (!roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep)))
    throw new BerthError(
      'forbidden',
      `an agent's token cannot name the path ${repo}`,
      roots.length
        ? `give a URL, or a repository under ${roots.join(', ')}`
        : "give a URL (the node's operator allows no paths: BERTH_AGENT_REPO_ROOTS)",
    );
}
