// The nodes the dashboard shows: this node, and every node it knows (`berth node add`), each
// reached through the one client. An environment's key on the page is `ENV` on this node and
// `NODE/ENV` elsewhere.
import { NodeClient } from '../client/client.js';
import { BerthError } from '../core/errors.js';
import { Environment } from '../sdk/environment.js';
import { clientFor, loadNodes } from '../sdk/nodes.js';

export interface Source {
  /** null for this node. */
  node: string | null;
  client: NodeClient;
}

export function envKey(node: string | null, name: string): string {
  return node ? `${node}/${name}` : name;
}

export class Sources {
  readonly local: Source;
  private readonly remotes = new Map<string, Source>();

  constructor(socketPath: string) {
    this.local = { node: null, client: new NodeClient({ socketPath }) };
  }

  /** This node and the nodes in nodes.json (read now: one added later shows after a restart of the feed). */
  all(log: (l: string) => void): Source[] {
    let names: string[] = [];
    try {
      names = Object.keys(loadNodes());
    } catch (err) {
      log(`berth: dashboard: ${(err as Error).message}`);
    }
    for (const n of names) {
      if (this.remotes.has(n)) continue;
      try {
        this.remotes.set(n, { node: n, client: clientFor(n) });
      } catch (err) {
        log(`berth: dashboard: node ${n}: ${(err as Error).message}`);
      }
    }
    return [this.local, ...this.remotes.values()];
  }

  /** The source and the environment's own name for a key from the page. */
  resolve(key: string): { source: Source; name: string } {
    const slash = key.indexOf('/');
    if (slash < 0) return { source: this.local, name: key };
    const source = this.remotes.get(key.slice(0, slash));
    if (!source) throw new BerthError('not_found', `no node named ${key.slice(0, slash)}`);
    return { source, name: key.slice(slash + 1) };
  }

  /** The SDK's handle on an environment (for its verbs). */
  async env(key: string, signal?: AbortSignal): Promise<Environment> {
    const { source, name } = this.resolve(key);
    return new Environment(source.client, name, await source.client.getEnv(name, signal));
  }

  close(): void {
    this.local.client.close();
    for (const s of this.remotes.values()) s.client.close();
  }
}
