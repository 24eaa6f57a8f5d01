// The nodes this machine knows (berth node add), and NODE/ENV names resolved to a client.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
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
