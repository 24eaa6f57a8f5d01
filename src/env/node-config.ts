// What a node is made of on disk, and the defaults every environment inherits.
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Isolation, Limits as LimitsSchema, type Limits } from '../core/api.js';
import { BerthError } from '../core/errors.js';
import { berthHome } from '../core/home.js';
import { cacheDir } from '../toolchain/base-image.js';
import { loadIdMap, type IdMap } from './userns.js';

export interface NodeConfig {
  home: string;
  /** Where workspaces live: the home, or a copy-on-write file system inside it. */
  workRoot: string;
  /** Workspaces are btrfs subvolumes: snapshots and forks cost the same at any size. */
  cow: boolean;
  /** The storage path in use and why (`describe` and `berth node info` show it). */
  storage: { kind: 'btrfs' | 'copy'; reason: string };
  cacheRoot: string;
  nodeId: string;
  /** dist/agent: agent.js and its protocol, mounted read-only into every environment. */
  agentDir: string;
  /** The node's own node binary, mounted read-only to run the agent. */
  nodeBinary: string;
  /** The CA bundle environments trust, or null when the node has none. */
  caBundle: string | null;
  /** Proxy variables passed on to environments. */
  proxyEnv: Record<string, string>;
  defaultLimits: Limits;
  ulimits: Array<{ name: string; soft: number; hard: number }>;
  networkName: string;
  /**
   * Directories whose git repositories an agent's token may name by path
   * (BERTH_AGENT_REPO_ROOTS, colon-separated). Agent tokens may always name a URL.
   */
  agentRepoRoots: string[];
  /**
   * The host range root in an environment maps to, on an engine where the node chooses
   * (Podman); null with BERTH_USERNS=host. A Docker daemon remaps by its own configuration.
   */
  userns: IdMap | null;
  /** The isolation tier of an environment that names none (BERTH_ISOLATION: runc or gvisor). */
  isolation: Isolation;
}

export { berthHome };

export function loadNodeConfig(env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const home = berthHome(env);
  mkdirSync(join(home, 'envs'), { recursive: true, mode: 0o700 });
  const idPath = join(home, 'node-id');
  if (!existsSync(idPath)) writeFileSync(idPath, randomBytes(6).toString('hex'));
  const nodeId = readFileSync(idPath, 'utf8').trim();
  const here = dirname(fileURLToPath(import.meta.url));
  return {
    home,
    workRoot: home,
    cow: false,
    storage: { kind: 'copy', reason: 'not set up yet' },
    cacheRoot: cacheDir(env),
    nodeId,
    agentDir: resolve(here, '..', 'agent'),
    nodeBinary: process.execPath,
    caBundle: env.BERTH_NO_TRUST === '1' ? null : writeCaBundle(home, env),
    proxyEnv: pick(env, ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy']),
    defaultLimits: parseDefaultLimits(env),
    ulimits: [
      { name: 'nofile', ...withinHard('Max open files', 8192) },
      { name: 'nproc', ...withinHard('Max processes', 4096) },
    ],
    networkName: env.BERTH_NETWORK ?? 'berth',
    agentRepoRoots: (env.BERTH_AGENT_REPO_ROOTS ?? '')
      .split(':')
      .filter(Boolean)
      .map((p) => resolve(p)),
    userns: loadIdMap(env),
    isolation: parseIsolation(env.BERTH_ISOLATION),
  };
}

function parseIsolation(raw: string | undefined): Isolation {
  const r = Isolation.safeParse(raw || 'runc');
  if (!r.success) throw new BerthError('usage', `BERTH_ISOLATION must be runc or gvisor, not ${JSON.stringify(raw)}`);
  return r.data;
}

/** Limits are on by default; a malformed override is an error, never "unlimited". */
function parseDefaultLimits(env: NodeJS.ProcessEnv): Limits {
  const raw = {
    memoryMb: Number(env.BERTH_DEFAULT_MEMORY_MB || 2048),
    cpus: Number(env.BERTH_DEFAULT_CPUS || 1),
    pids: Number(env.BERTH_DEFAULT_PIDS || 1024),
  };
  const r = LimitsSchema.safeParse(raw);
  if (!r.success) {
    throw new BerthError(
      'usage',
      `invalid default limits in BERTH_DEFAULT_MEMORY_MB/CPUS/PIDS: ${r.error.issues[0]?.message ?? ''}`,
      'use whole megabytes, CPUs and a pid count',
    );
  }
  return r.data;
}

function pick(env: NodeJS.ProcessEnv, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) if (env[k]) out[k] = env[k]!;
  return out;
}

/** Raising a hard rlimit is denied here, so ask for no more than the node itself has. */
function withinHard(row: string, want: number): { soft: number; hard: number } {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(row));
    const hard = line?.slice(row.length).trim().split(/\s+/)[1];
    const n = hard === 'unlimited' || hard === undefined ? want : Math.min(want, Number(hard));
    return { soft: n, hard: n };
  } catch {
    return { soft: 1024, hard: 1024 };
  }
}

/**
 * The node's trust, as one bundle: the system bundle plus NODE_EXTRA_CA_CERTS when that
 * names another file. Environments get it read-only, with the usual variables pointing at it,
 * so package managers work behind the same TLS-inspecting proxy as the node.
 */
function writeCaBundle(home: string, env: NodeJS.ProcessEnv): string | null {
  const candidates = [env.BERTH_CA_BUNDLE, env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt', env.NODE_EXTRA_CA_CERTS];
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const c of candidates) {
    if (!c || seen.has(c) || !existsSync(c)) continue;
    seen.add(c);
    const text = readFileSync(c, 'utf8');
    if (!text.includes('BEGIN CERTIFICATE')) continue;
    if (parts.some((p) => p.includes(text.trim()))) continue;
    parts.push(text.trim());
  }
  if (parts.length === 0) return null;
  const out = join(home, 'ca-bundle.crt');
  writeFileSync(out + '.tmp', parts.join('\n') + '\n', { mode: 0o644 });
  renameSync(out + '.tmp', out);
  return out;
}

export const CA_PATH_IN_ENV = '/.berth/ca/ca-certificates.crt';

export function trustEnv(): Record<string, string> {
  return {
    SSL_CERT_FILE: CA_PATH_IN_ENV,
    NODE_EXTRA_CA_CERTS: CA_PATH_IN_ENV,
    CURL_CA_BUNDLE: CA_PATH_IN_ENV,
    GIT_SSL_CAINFO: CA_PATH_IN_ENV,
    REQUESTS_CA_BUNDLE: CA_PATH_IN_ENV,
    PIP_CERT: CA_PATH_IN_ENV,
    npm_config_cafile: CA_PATH_IN_ENV,
  };
}
