// The secrets part of a node, put together: the vault (sealed values, placeholders), the
// node's CA, the bundle environments with a secret trust (the node's bundle plus that CA),
// and the interceptor the egress proxy hands their connections to.
import { renameSync, writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StateDb } from '../../state/state-db.js';
import { setInterceptor } from '../egress/intercept.js';
import { NodeCa } from './node-ca.js';
import { SecretInterceptor } from './interceptor.js';
import { SecretVault } from './vault.js';

export class NodeSecrets {
  private constructor(
    readonly vault: SecretVault,
    readonly ca: NodeCa,
    /** The node's bundle and the node's CA, or null when the node has no bundle to extend. */
    readonly bundle: string | null,
    readonly interceptor: SecretInterceptor,
  ) {}

  /**
   * @param resolveEnv the egress proxy names an environment; this gives its id (or undefined)
   */
  static async start(o: {
    db: StateDb;
    home: string;
    nodeId: string;
    caBundle: string | null;
    resolveEnv: (env: string) => string | undefined;
    log: (line: string) => void;
  }): Promise<NodeSecrets> {
    const vault = new SecretVault(o.db.secrets, o.home);
    const ca = await NodeCa.load(o.home, o.nodeId);
    let bundle: string | null = null;
    const trust = o.caBundle ? readFileSync(o.caBundle, 'utf8') : undefined;
    if (trust) {
      bundle = join(ca.dir, 'env-bundle.crt');
      writeFileSync(bundle + '.tmp', `${trust.trim()}\n${ca.pem.trim()}\n`, { mode: 0o644 });
      renameSync(bundle + '.tmp', bundle);
    }
    const interceptor = new SecretInterceptor(vault, ca, trust, o.log);
    setInterceptor((env, host, port) => {
      const id = o.resolveEnv(env);
      return id ? interceptor.intercept(id, host, port) : null;
    });
    return new NodeSecrets(vault, ca, bundle, interceptor);
  }

  close(): void {
    setInterceptor(null);
    this.interceptor.close();
  }
}
