// The nodes this machine knows (berth node add), and NODE/ENV names resolved to a client.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { EnvInfo, NodeInfo } from '../core/api.js';
import { typedError } from '../core/errors.js';
import { validateEnvName } from '../core/names.js';
import { NodeClient } from '../client/client.js';
import { berthHome } from '../core/home.js';
import { connectLocal } from './connect.js';

export interface NodeEntry {
  url: string;
  tokenFile?: string;
  token?: string;
  ca?: string;
  /** The registry this node's toolchains come from. */
  registry?: string;
}

function file(): string {
  return join(berthHome(), 'nodes.json');
}

export function loadNodes(): Record<string, NodeEntry> {
  if (!existsSync(file())) return {};
  try {
    return (JSON.parse(readFileSync(file(), 'utf8')) as { nodes?: Record<string, NodeEntry> }).nodes ?? {};
  } catch {
    throw typedError('invalid_request', `${file()} is not valid JSON`, 'fix or remove it');
  }
}

export function saveNodes(nodes: Record<string, NodeEntry>): void {
  mkdirSync(berthHome(), { recursive: true });
  const tmp = file() + '.tmp';
  writeFileSync(tmp, JSON.stringify({ nodes }, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file());
}

/** tcp://host:port -> http://host:port; tls://host:port -> https://host:port. */
export function normalizeUrl(url: string): string {
  const m = /^(tcp|tls|http|https):\/\/([^/\s]+)\/?$/.exec(url.trim());
  if (!m) throw typedError('usage', `invalid node address ${JSON.stringify(url)}`, 'use tcp://HOST:PORT or tls://HOST:PORT');
  return `${m[1] === 'tls' || m[1] === 'https' ? 'https' : 'http'}://${m[2]}`;
}

export function clientFor(nodeName: string): NodeClient {
  const n = loadNodes()[nodeName];
  if (!n) throw typedError('not_found', `no node named ${nodeName}`, 'add it with `berth node add NAME tcp://HOST:PORT --token-file FILE`');
  let token = n.token;
  if (!token && n.tokenFile) {
    try {
      token = readFileSync(n.tokenFile, 'utf8').trim();
    } catch {
      throw typedError('unauthorized', `cannot read the token file ${n.tokenFile} for node ${nodeName}`);
    }
  }
  return new NodeClient({ url: n.url, token, ca: n.ca ? readFileSync(n.ca) : undefined });
}

export interface Target {
  client: NodeClient;
  /** The environment's name on its node. */
  env: string;
  /** The node's name, or null for the local node. */
  node: string | null;
}

/** `ENV` is on the local node; `NODE/ENV` on a node added with `berth node add`. */
export async function target(arg: string): Promise<Target> {
  const slash = arg.indexOf('/');
  if (slash < 0) return { client: await connectLocal({ autostart: true }), env: arg, node: null };
  const node = arg.slice(0, slash);
  const env = arg.slice(slash + 1);
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(node) || env.includes('/')) {
    throw typedError(
      'invalid_name',
      `invalid environment name ${JSON.stringify(arg)}`,
      'use ENV, or NODE/ENV with a node added by `berth node add`',
    );
  }
  validateEnvName(env);
  return { client: clientFor(node), env, node };
}

/** What `addNode` takes besides the name and address. */
export interface NodeAddOptions {
  tokenFile?: string;
  token?: string;
  ca?: string;
  registry?: string;
  signal?: AbortSignal;
}

/**
 * Adds a node to this machine's list, once it answers with the token given: a node that does
 * not (a wrong token, nothing at that address) is not added, and the list is as it was.
 */
export async function addNode(name: string, url: string, opts: NodeAddOptions = {}): Promise<{ entry: NodeEntry; node: NodeInfo }> {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name))
    throw typedError('invalid_name', `invalid node name ${JSON.stringify(name)}`, 'use lowercase letters, digits and dashes');
  const nodes = loadNodes();
  const entry: NodeEntry = {
    url: normalizeUrl(url),
    ...(opts.tokenFile ? { tokenFile: opts.tokenFile } : {}),
    ...(opts.token ? { token: opts.token } : {}),
    ...(opts.ca ? { ca: opts.ca } : {}),
    ...(opts.registry ? { registry: opts.registry } : {}),
  };
  saveNodes({ ...nodes, [name]: entry });
  let client: NodeClient | undefined;
  try {
    client = clientFor(name);
    const node = await client.node(opts.signal ?? AbortSignal.timeout(10_000));
    return { entry, node };
  } catch (err) {
    saveNodes(nodes); // nothing half-added
    throw err;
  } finally {
    client?.close();
  }
}

export function removeNode(name: string): void {
  const nodes = loadNodes();
  if (!Object.hasOwn(nodes, name)) throw typedError('not_found', `no node named ${name}`, 'see `berth node ls`');
  delete nodes[name];
  saveNodes(nodes);
}

export interface NodeStatus {
  name: string;
  url: string;
  reachable: boolean;
  node: string | null;
  engine: string | null;
  error: string | null;
}

/** Every node this machine knows, each asked at once whether it answers. */
export function nodeStatuses(timeoutMs = 5000): Promise<NodeStatus[]> {
  return Promise.all(
    Object.entries(loadNodes()).map(async ([name, n]): Promise<NodeStatus> => {
      let c: NodeClient | undefined;
      try {
        c = clientFor(name);
        const info = await c.node(AbortSignal.timeout(timeoutMs));
        return { name, url: n.url, reachable: true, node: info.node, engine: `${info.engine.name} ${info.engine.version}`, error: null };
      } catch (err) {
        return { name, url: n.url, reachable: false, node: null, engine: null, error: (err as Error).message };
      } finally {
        c?.close();
      }
    }),
  );
}

/** Every environment on every node (`node` is `local` for this machine's), and the nodes that did not answer. */
export async function listEverywhere(timeoutMs = 10_000): Promise<{ envs: Array<EnvInfo & { node: string }>; unreachable: string[] }> {
  const local = await connectLocal({ autostart: true });
  const envs: Array<EnvInfo & { node: string }> = [];
  const unreachable: string[] = [];
  try {
    await Promise.all([
      local.listEnvs().then((l) => void envs.push(...l.map((e) => ({ ...e, node: 'local' })))),
      ...Object.keys(loadNodes()).map(async (name) => {
        let c: NodeClient | undefined;
        try {
          c = clientFor(name);
          const l = await c.listEnvs(AbortSignal.timeout(timeoutMs));
          envs.push(...l.map((e) => ({ ...e, node: name })));
        } catch (err) {
          unreachable.push(`${name}: ${(err as Error).message}`);
        } finally {
          c?.close();
        }
      }),
    ]);
  } finally {
    local.close();
  }
  envs.sort((a, b) => (a.node + a.name).localeCompare(b.node + b.name));
  return { envs, unreachable };
}
